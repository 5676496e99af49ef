"""The Channel protocol: what the Relay needs of a bridge to a place people talk.

A channel is one object the Relay builds from the Context (relayd/daemon/relay.py names the
kinds it builds), starts once HTTP serves and stops first at shutdown. Each channel registers
its own agent(s), turns what people write into relay messages, posts what its agents receive
back to the chat, and reports its state for `GET /api/channels` and the dashboard.
docs/channels.md describes the shape for a new one.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


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

