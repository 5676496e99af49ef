"""Channels: bridges between the relay and the places people talk (Telegram first).

A channel is one object the Relay builds from the settings, starts once HTTP serves and stops
first at shutdown. Each channel registers its own agent(s), turns what people write into relay
messages, posts what its agents receive back to the chat, and reports its state for
`GET /api/channels` and the dashboard. docs/channels.md describes the shape for a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from relayd.daemon.context import Context


@runtime_checkable
class Channel(Protocol):
    """What the Relay needs of a channel."""

    name: str  # unique, lower case: the entry's name in GET /api/channels

    @property
    def configured(self) -> bool:
        """Whether its settings are there; an unconfigured channel is listed but not started."""
        ...

    async def start(self) -> None:
        """Begin in the background and return at once; never raise for an outage."""
        ...

    async def stop(self) -> None:
        """End the background work; the store is still open."""
        ...

    def state(self) -> dict[str, Any]:
        """`{name, kind: "bridge", configured, connected, state, lastError, ...}`."""
        ...


ChannelFactory = Callable[["Context"], Channel]


def factories() -> list[ChannelFactory]:
    """The channel kinds relayd knows, in the order GET /api/channels lists them."""
    from relayd.channels.telegram import TelegramChannel

    return [TelegramChannel]


def build_channels(ctx: Context) -> list[Channel]:
    return [factory(ctx) for factory in factories()]
