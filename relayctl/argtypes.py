"""argparse types the commands share: whole numbers, the relay's bounds, seconds, lists.

A value out of range is an argparse error, so relayctl exits 2 (usage) before asking the relay.
"""

from __future__ import annotations

import argparse

MAX_LIMIT = 1000  # the relay's bounds for ?limit= and ?wait=
MAX_WAIT = 60


def whole_number(text: str, low: int, high: int | None = None) -> int:
    """A whole number in [low, high]; anything else is a usage error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least {low}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"'{text}' must be at most {high}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def list_limit(text: str) -> int:
    """--limit: 1..1000, the relay's bound."""
    return whole_number(text, 1, MAX_LIMIT)


def wait_seconds(text: str) -> int:
    """--wait: 0..60 whole seconds, the relay's long-poll bound."""
    return whole_number(text, 0, MAX_WAIT)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must not be negative")
    return value


def comma_or_many(values: list[str] | None) -> list[str] | None:
    """Accepts `--tags a,b` and `--tags a b` alike."""
    if values is None:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]
