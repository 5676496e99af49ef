"""JSON in and out of the daemon: orjson when it is installed, the standard library otherwise.

Both produce the same JSON text (compact, UTF-8, no ASCII escaping). Where the two libraries
would not agree the standard library decides: orjson refuses integers beyond 64 bits on output
and reads them as floats on input, so such values take the slow path, as does anything orjson
rejects (the standard library then gives the error its usual wording).
"""

from __future__ import annotations

import json
import re
from typing import Any

try:  # pragma: no cover - exercised by whichever way the environment is installed
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_LONG_INTEGER = re.compile(rb"\d{19}")  # could be an integer orjson would read as a float

FAST = orjson is not None


def dumps(value: Any) -> str:
    """Compact JSON text."""
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # an integer beyond 64 bits, a non-string key: stdlib semantics
            pass
    return _ENCODER.encode(value)


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (what responses carry)."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass
    return _ENCODER.encode(value).encode()


def loads(raw: str | bytes, decoder: json.JSONDecoder | None = None) -> Any:
    """Parse JSON; `decoder` is the standard-library decoder whose rules must hold (orjson is
    only used where it gives the same answer: no long integers, and a clean parse)."""
    if orjson is not None:
        data = raw.encode() if isinstance(raw, str) else raw
        if _LONG_INTEGER.search(data) is None:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # the standard library gives the error (or, rarely, accepts it)
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return (decoder or _STDLIB).decode(text)


_STDLIB = json.JSONDecoder()
