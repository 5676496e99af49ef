"""The event fan-out: an EventBus interface and its in-process implementation.

Each subscriber has a bounded buffer. A subscriber that falls behind is not allowed to grow
memory or slow the publisher: its buffer is dropped and it is flagged ``overflowed``, and the
consumer catches up from the durable event log (the store) instead.
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from relayd.domain.models import Event

EventFilter = Callable[[Event], bool]


class Subscription:
    def __init__(self, maxsize: int, accepts: EventFilter) -> None:
        self._buffer: deque[Event] = deque()
        self._maxsize = maxsize
        self._accepts = accepts
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.closed = False
        # Optional fast path: while the consumer is parked with nothing pending, hand it the
        # event synchronously; it answers False to fall back to buffer-and-wake.
        self.direct: Callable[[Event], bool] | None = None

    def offer(self, event: Event) -> None:
        if self.closed or not self._accepts(event):
            return
        waiter = self._waiter
        parked = waiter is not None and not waiter.done() and not self._buffer
        if parked and self.direct is not None and self.direct(event):
            return
        if len(self._buffer) >= self._maxsize:
            self._buffer.clear()
            self.overflowed = True
        else:
            self._buffer.append(event)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reset_overflow(self) -> None:
        self.overflowed = False

    async def next_batch(self, timeout: float | None) -> list[Event]:  # noqa: ASYNC109 the long-poll's wait, ending in [] (no events), not an error
        """Buffered events, waiting up to `timeout`; [] on timeout, close or overflow."""
        # A bare future and asyncio.timeout: with a thousand streams, wait_for's extra task
        # per wait shows up in delivery latency.
        if not self._buffer and not self.closed and not self.overflowed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                return []
            finally:
                self._waiter = None
        batch = list(self._buffer)
        self._buffer.clear()
        return batch


class EventBus(abc.ABC):
    """Delivers committed events to live subscribers, in the order they are published."""

    @abc.abstractmethod
    def subscribe(self, accepts: EventFilter, maxsize: int | None = None) -> Subscription: ...

    @abc.abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    @abc.abstractmethod
    def publish(self, events: Sequence[Event]) -> None: ...

    @abc.abstractmethod
    def close_all(self) -> None: ...

    @property
    @abc.abstractmethod
    def subscriber_count(self) -> int: ...


class LocalBus(EventBus):
    def __init__(self, default_maxsize: int = 1000) -> None:
        self._subscriptions: set[Subscription] = set()
        self._default_maxsize = default_maxsize

    def subscribe(self, accepts: EventFilter, maxsize: int | None = None) -> Subscription:
        subscription = Subscription(maxsize or self._default_maxsize, accepts)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.close()

    def publish(self, events: Sequence[Event]) -> None:
        for subscription in tuple(self._subscriptions):
            for event in events:
                subscription.offer(event)

    def close_all(self) -> None:
        for subscription in tuple(self._subscriptions):
            subscription.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)
