"""argparse types the commands share: whole numbers, the relay's bounds, seconds, lists.

A value out of range is an argparse error, so relayctl exits 2 (usage) before asking the relay.
"""

from __future__ import annotations

import argparse

MAX_LIMIT = 1000  # the relay's bounds for ?limit= and ?wait=
MAX_WAIT = 60


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    if text.strip() == "0":
        return 0
    return positive_int(text)


def list_limit(text: str) -> int:
    """--limit: 1..1000, the relay's bound; out of range is a usage error (exit 2)."""
    value = positive_int(text)
    if value > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"'{text}' must be at most {MAX_LIMIT}")
    return value


def wait_seconds(text: str) -> int:
    """--wait: 0..60 whole seconds, the relay's long-poll bound."""
    value = non_negative_int(text)
    if value > MAX_WAIT:
        raise argparse.ArgumentTypeError(f"'{text}' must be at most {MAX_WAIT}")
    return value


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
