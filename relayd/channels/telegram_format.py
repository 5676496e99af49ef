"""How relay messages look in Telegram: MarkdownV2 escaping and splitting at the Bot API's
4096-character limit (counted, as Telegram does, in UTF-16 code units)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_TEXT = 4096
# Every character MarkdownV2 reserves must be escaped outside entities (Bot API, "MarkdownV2
# style"); the backslash itself too.
RESERVED = frozenset("_*[]()~`>#+-=|{}.!\\")
HEADER_ROOM = 200  # UTF-16 units kept free for the bold header of each part


@dataclass(frozen=True)
class Part:
    header: str
    body: str

    def markdown(self) -> str:
        return f"*{escape(self.header)}*\n{escape(self.body)}" if self.body else (
            f"*{escape(self.header)}*"
        )

    def plain(self) -> str:
        return f"{self.header}\n{self.body}" if self.body else self.header


def escape(text: str) -> str:
    """Text as MarkdownV2 shows it literally."""
    return "".join(f"\\{c}" if c in RESERVED else c for c in text)


def units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _cost(char: str) -> int:
    return (2 if ord(char) > 0xFFFF else 1) + (1 if char in RESERVED else 0)


def split(text: str, budget: int) -> list[str]:
    """Pieces of `text` whose escaped form fits `budget` units, cut at a line break or a space
    in the second half of a piece when there is one."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        cost, end, cut = 0, start, -1
        while end < len(text):
            step = _cost(text[end])
            if cost + step > budget:
                break
            cost += step
            end += 1
            if text[end - 1] in "\n ":
                cut = end
        if end < len(text) and cut > start + (end - start) // 2:
            end = cut
        pieces.append(text[start:end])
        start = end
    return pieces or [""]


def header_of(message_id: int, sender: str, subject: str | None, sent_by: str | None) -> str:
    header = f"#{message_id} from {sender}"
    if sent_by and sent_by not in ("local", sender):
        header += f" (via {sent_by})"
    if subject:
        header += f": {subject}"
    return split(header, HEADER_ROOM - 4)[0]  # room for the bold markers and the line break


def render(message_id: int, sender: str, subject: str | None, body: str,
           sent_by: str | None = None, limit: int = MAX_TEXT) -> list[Part]:
    """The Telegram messages one relay message becomes (several when the body is long)."""
    header = header_of(message_id, sender, subject, sent_by)
    pieces = split(body, limit - HEADER_ROOM)
    if len(pieces) == 1:
        return [Part(header, pieces[0])]
    count = len(pieces)
    return [
        Part(header if index == 0 else f"#{message_id} ({index + 1}/{count})", piece)
        for index, piece in enumerate(pieces)
    ]
