"""Request parsing and validation shared by the handlers: every bad input becomes a 4xx."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from relayd import jsoncodec
from relayd.domain.targets import AGENT_ID_RE
from relayd.errors import ApiError, invalid

MAX_SHORT_TEXT = 1024
T = TypeVar("T")


async def read_body(request: web.Request) -> bytes:
    """The request body; one that cannot be decoded (a broken gzip or deflate stream under
    `Content-Encoding`) is a 400 that closes the connection, since the stream is unusable."""
    try:
        return await request.read()
    except RequestPayloadError:
        request.content.feed_eof()  # nothing more to read: aiohttp must not linger on it
        encoding = request.headers.get("Content-Encoding", "")
        raise ApiError(
            400,
            "invalid_request",
            f"the request body cannot be decoded (Content-Encoding: {encoding[:32]})",
            close=True,
        ) from None


async def read_json(request: web.Request) -> Body:
    return _parse_object(await read_body(request))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999 would come back out as Infinity, which is not JSON
        raise ValueError("number out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _parse_object(raw: bytes) -> Body:
    try:
        data = jsoncodec.loads(raw, _DECODER)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError also covers NaN/Infinity and integers too long to convert
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return Body(data)


async def read_optional_json(request: web.Request) -> Body:
    if not request.can_read_body:
        return Body({})
    raw = await read_body(request)
    if not raw.strip():
        return Body({})
    return _parse_object(raw)


def clean_text(value: str, name: str) -> str:
    """Refuse what cannot be stored faithfully: NUL and lone surrogates."""
    if "\x00" in value:
        raise invalid(f"'{name}' must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"'{name}' contains an invalid character (lone surrogate)") from None
    return value


def clean_json(value: Any, name: str, depth: int = 0) -> Any:
    if depth > 32:
        raise invalid(f"'{name}' is nested too deeply")
    if isinstance(value, str):
        return clean_text(value, name)
    if isinstance(value, list):
        return [clean_json(v, name, depth + 1) for v in value]
    if isinstance(value, dict):
        return {clean_text(k, name): clean_json(v, name, depth + 1) for k, v in value.items()}
    return value


class Body:
    """Typed access to a JSON object; each accessor raises 400 naming the field."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def has(self, name: str) -> bool:
        return name in self.data

    def text(
        self,
        name: str,
        *,
        required: bool = False,
        max_len: int = MAX_SHORT_TEXT,
        allow_empty: bool = False,
    ) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise invalid(f"'{name}' is required")
            return None
        if not isinstance(value, str):
            raise invalid(f"'{name}' must be a string")
        if not value and not allow_empty:
            raise invalid(f"'{name}' must not be empty")
        if len(value) > max_len:
            raise invalid(f"'{name}' is longer than {max_len} characters")
        return clean_text(value, name)

    def text_up_to_bytes(self, name: str, max_bytes: int, *, required: bool) -> str | None:
        """A text whose limit is in UTF-8 bytes (message bodies), not characters."""
        value = self.text(name, required=required, max_len=max_bytes)
        # a character is at most 4 bytes of UTF-8: a short text needs no encoding to know
        if value is not None and 4 * len(value) > max_bytes and \
                len(value.encode("utf-8")) > max_bytes:
            raise invalid(f"'{name}' is larger than {max_bytes} bytes")
        return value

    def required_text(self, name: str, max_len: int = MAX_SHORT_TEXT) -> str:
        value = self.text(name, required=True, max_len=max_len)
        assert value is not None
        return value

    def agent_id(self, name: str, *, required: bool = True) -> str | None:
        value = self.text(name, required=required, max_len=128)
        if value is not None and not AGENT_ID_RE.match(value):
            raise invalid(f"'{name}' must match [A-Za-z0-9._:@-]{{1,128}}")
        return value

    def required_agent_id(self, name: str) -> str:
        value = self.agent_id(name, required=True)
        assert value is not None
        return value

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid(f"'{name}' must be true or false")
        return value

    def integer(self, name: str, *, minimum: int = 1, maximum: int = 2**63 - 1) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"'{name}' must be an integer")
        if value < minimum or value > maximum:
            if maximum < 2**63 - 1:
                raise invalid(f"'{name}' must be at least {minimum} and at most {maximum}")
            raise invalid(f"'{name}' is out of range")
        return value

    def string_list(
        self, name: str, *, max_items: int = 64, max_len: int = 128
    ) -> list[str] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise invalid(f"'{name}' must be a list of non-empty strings")
        if len(value) > max_items:
            raise invalid(f"'{name}' has more than {max_items} items")
        for item in value:
            if len(item) > max_len:
                raise invalid(f"'{name}' has an item longer than {max_len} characters")
            clean_text(item, name)
        return list(dict.fromkeys(value))

    def obj(self, name: str) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid(f"'{name}' must be an object")
        cleaned: dict[str, Any] = clean_json(value, name)
        if len(json.dumps(cleaned)) > 16 * 1024:
            raise invalid(f"'{name}' is larger than 16 KiB")
        return cleaned

    def choice(self, name: str, options: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.text(name, required=required, max_len=64)
        if value is not None and value not in options:
            raise invalid(f"'{name}' must be one of {', '.join(options)}")
        return value


# --------------------------------------------------------------------------- query strings


def query_text(request: web.Request, name: str, max_len: int = MAX_SHORT_TEXT) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if len(value) > max_len:
        raise invalid(f"query parameter '{name}' is too long")
    return clean_text(value, name)


def query_agent_id(request: web.Request, name: str) -> str | None:
    value = query_text(request, name, max_len=128)
    if value is not None and not AGENT_ID_RE.match(value):
        raise invalid(f"query parameter '{name}' must be an agent id")
    return value


def query_int(
    request: web.Request,
    name: str,
    *,
    default: int | None = None,
    minimum: int = 0,
    maximum: int | None = None,
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"query parameter '{name}' must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum) or value > 2**63 - 1:
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise invalid(f"query parameter '{name}' must be at least {minimum}{upper}")
    return value


MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def query_limit(request: web.Request) -> int:
    """`?limit=`: 1 to 1000 (out of range is a 400, not clamped), default 100."""
    limit = query_int(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    assert limit is not None
    return limit


def page_of(
    request: web.Request, items: list[T], key: Callable[[T], Any], after: Any
) -> tuple[list[T], Any]:
    """One page of a list sorted by `key`: the items after `after` (None: from the start),
    at most `?limit=` (default 100) of them, and the `next` cursor (the last key) when more
    remain, else None."""
    limit = query_limit(request)
    rest = items if after is None else [item for item in items if key(item) > after]
    chunk = rest[:limit]
    return chunk, key(chunk[-1]) if len(rest) > limit else None


def query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no", ""):
        return False
    raise invalid(f"query parameter '{name}' must be true or false")


def idempotency_key(request: web.Request) -> str | None:
    """The Idempotency-Key header: up to 128 characters that storage can keep faithfully."""
    return checked_idempotency_key(request.headers.get("Idempotency-Key"), "Idempotency-Key")


def checked_idempotency_key(key: Any, name: str) -> str | None:
    """An idempotency key from a header or an MCP tool argument named `name`."""
    if key is None:
        return None
    where = "the Idempotency-Key header" if name == "Idempotency-Key" else f"'{name}'"
    if not isinstance(key, str) or not 1 <= len(key) <= 128:
        raise invalid(f"{where} must be 1 to 128 characters")
    return clean_text(key, name)


def path_int(request: web.Request, what: str) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < 1:
        raise ApiError(404, "not_found", f"{what} '{raw}' does not exist")
    return int(raw)


def path_agent_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not AGENT_ID_RE.match(value):
        raise ApiError(404, "not_found", "agent ids match [A-Za-z0-9._:@-]{1,128}")
    return value
