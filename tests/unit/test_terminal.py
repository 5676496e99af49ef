"""relayctl/terminal.escape: what a terminal must never get raw, and what stays as it is."""

from __future__ import annotations

import pytest

from relayctl.terminal import escape, one_line

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize("char", [*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)),
                                  *BIDI, "\u2028", "\u2029"])
def test_every_unsafe_character_comes_out_escaped(char: str) -> None:
    if char in "\n\t":
        return
    shown = escape(f"a{char}b")
    assert char not in shown
    expected = f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    assert shown == f"a{expected}b"


def test_newlines_tabs_and_ordinary_text_stay() -> None:
    text = "línea 1\tcol\nzeile 2 → ✓ 👩‍💻 日本語"  # the emoji keeps its zero-width joiner
    assert escape(text) == text
    assert one_line("a\nb") == "a\\x0ab"
    assert escape("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
