"""Text for a terminal: control characters, escape sequences and bidi overrides made visible.

Message bodies, labels and anything else a relay sends come from other agents and programs;
printed raw, an ESC sequence could rewrite the screen or the window title, and a bidi
override could make text read differently from what it is. Every human printer in relayctl
goes through ``escape``: such characters come out as ``\\x1b`` / ``\\u202e`` style escapes,
never raw. JSON output (--json) is left alone: json.dumps already escapes control characters.
"""

from __future__ import annotations

import re

# C0 controls (except tab, and newline, which separates the lines relayctl prints), DEL, C1,
# and the Unicode format characters that reorder or hide text: the bidi embeddings, overrides
# and isolates, the directional marks, and the line/paragraph separators.
_UNSAFE = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028,
           0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]


def _escape_of(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {code: _escape_of(code) for code in _UNSAFE if code != 0x09}  # a tab is harmless
_TABLE_KEEP_NEWLINES = {code: value for code, value in _TABLE.items() if code != 0x0A}


_ANY_UNSAFE = re.compile("[" + "".join(re.escape(chr(code)) for code in _TABLE) + "]")


def escape(text: object, keep_newlines: bool = True) -> str:
    """``text`` with every unsafe character escaped; newlines kept unless told otherwise."""
    value = str(text)
    if _ANY_UNSAFE.search(value) is None:  # the usual case, in C speed
        return value
    return value.translate(_TABLE_KEEP_NEWLINES if keep_newlines else _TABLE)


def one_line(text: object) -> str:
    """A value shown inside one line (a label, an id): newlines escaped too."""
    return escape(text, keep_newlines=False)
