"""Callback delivery: the worker that drains the durable outbox to integrations' callbackUrl.

Rows are written by the task operations in the same transaction as the change they report
(relayd.storage.sql_callbacks). The worker runs in the background, so a slow or dead endpoint
never holds up the API:

- per task, strictly in order: only the oldest pending row of a task is ever in flight;
- across tasks, concurrently (bounded by ``concurrency``);
- each attempt has a timeout; a non-2xx answer, a refused connection or a timeout is retried
  with exponential backoff and jitter (half to all of the delay), up to
  ``callback_max_attempts``, then marked dead (a ``callback_dead`` task event, and counted in
  GET /api/integrations);
- after a restart the pending rows are attempted again at once. Delivery is at-least-once: an
  attempt that succeeded just before a crash is sent again with the same
  ``X-Agent-Relay-Delivery`` id, which receivers use to drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random

import aiohttp

from relayd import __version__
from relayd.bus import Subscription
from relayd.config.settings import Integration
from relayd.daemon.context import Context
from relayd.domain.models import Event, now_ms
from relayd.domain.tasks import Delivery

log = logging.getLogger("relayd.callbacks")

EVENT_HEADER = "X-Agent-Relay-Event"
DELIVERY_HEADER = "X-Agent-Relay-Delivery"
SIGNATURE_HEADER = "X-Agent-Relay-Signature"
ATTEMPT_HEADER = "X-Agent-Relay-Attempt"


def sign(secret: str, body: bytes) -> str:
    """The X-Agent-Relay-Signature value: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Delay before the next attempt after `attempts` failures: exponential, jittered between
    half and all of it (never near zero, so a dead endpoint is not hammered)."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


class CallbackWorker:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.base_delay = 1.0  # seconds before the first retry; doubles each time
        self.max_delay = 300.0
        self.timeout = 10.0  # one attempt, connect to last byte
        self.concurrency = 16
        self.poll_interval = 2.0  # a safety net: commits and finished attempts wake us
        self._kick = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # task id -> its delivery
        # deliveries that ended since the last due read began: that read may still show them
        # pending (it can start before their outcome commits), so they are not sent again
        self._ended: set[int] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._subscription: Subscription | None = None
        self.attempts = 0
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        resumed = await self.ctx.store.resume_callbacks()
        if resumed:
            log.info("callbacks: resuming %d pending deliveries", resumed)
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"agent-relay/{__version__}"},
            connector=aiohttp.TCPConnector(limit=self.concurrency),
        )
        self._subscription = self.ctx.bus.subscribe(self._wake_on, maxsize=1)
        self._loop_task = asyncio.create_task(self._run(), name="callback-worker")

    def _wake_on(self, event: Event) -> bool:
        # A bus filter used as a doorbell: every task change may have queued a callback.
        if event.type.startswith("task."):
            self._kick.set()
        return False

    async def stop(self) -> None:
        """Stop delivering; rows in flight stay pending and go out after the next start."""
        self._stopping = True
        self._kick.set()
        if self._subscription is not None:
            self.ctx.bus.unsubscribe(self._subscription)
        tasks = [t for t in (self._loop_task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop_task = None
        self._in_flight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ scheduling

    async def _run(self) -> None:
        while not self._stopping:
            self._kick.clear()
            try:
                await self._dispatch_due()
                pause = await self._pause()
            except Exception as exc:  # storage hiccup: try again shortly
                log.warning("callbacks: %s", exc)
                pause = self.poll_interval
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._kick.wait()

    async def _dispatch_due(self) -> None:
        room = self.concurrency - len(self._in_flight)
        if room <= 0:
            return
        if not await self.ctx.store.hold_job_lock("callbacks"):
            return  # another replica delivers (PostgreSQL); we take over if it dies
        self._ended.clear()
        due = await self.ctx.store.due_callbacks(now_ms(), room + len(self._in_flight))
        for delivery in due:
            if delivery.id in self._ended or delivery.task_id in self._in_flight:
                continue
            if len(self._in_flight) >= self.concurrency:
                continue
            task = asyncio.create_task(self._deliver(delivery), name="callback-delivery")
            self._in_flight[delivery.task_id] = task

    async def _pause(self) -> float:
        now = now_ms()
        next_at = await self.ctx.store.next_callback_due_at(now)
        if next_at is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.0, (next_at - now) / 1000))

    # ------------------------------------------------------------------ one attempt

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            await self._attempt(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recording failed (storage closing): it stays pending
            log.warning("callbacks: delivery %s not recorded: %s", delivery.delivery_id, exc)
        finally:
            self._in_flight.pop(delivery.task_id, None)
            self._ended.add(delivery.id)
            self._kick.set()

    async def _attempt(self, delivery: Delivery) -> None:
        integration = self.ctx.settings.integration_named(delivery.integration)
        if integration is None or integration.callback_url is None:
            await self._failed(delivery, "the integration has no callbackUrl any more", None,
                               final=True)
            return
        self.attempts += 1
        status, error = await self._post(integration, delivery)
        if status is not None and 200 <= status < 300:
            await self.ctx.store.callback_delivered(delivery.id, status)
            self.ctx.metrics.callback("delivered")
            return
        await self._failed(delivery, error or f"HTTP {status}", status)

    async def _post(self, integration: Integration, delivery: Delivery) -> tuple[int | None, str]:
        assert integration.callback_url is not None and self._session is not None
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: delivery.delivery_id,
            ATTEMPT_HEADER: str(delivery.attempts + 1),
        }
        if integration.callback_secret:
            headers[SIGNATURE_HEADER] = sign(integration.callback_secret, body)
        try:
            async with self._session.post(
                integration.callback_url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                await response.read()
                return response.status, ""
        except TimeoutError:
            return None, f"no answer within {self.timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    async def _failed(
        self, delivery: Delivery, error: str, status: int | None, final: bool = False
    ) -> None:
        settings = self.ctx.settings
        max_attempts = delivery.attempts + 1 if final else settings.callback_max_attempts
        delay = backoff_seconds(delivery.attempts + 1, self.base_delay, self.max_delay)
        outcome = await self.ctx.store.callback_failed(
            delivery.id, error, status, max_attempts, now_ms() + int(delay * 1000)
        )
        if outcome in ("dead", "retrying"):
            self.ctx.metrics.callback("dead" if outcome == "dead" else "failed")
        if outcome == "dead":
            log.warning(
                "callbacks: delivery %s (%s, task %d) is dead after %d attempts: %s",
                delivery.delivery_id, delivery.event, delivery.task_id, delivery.attempts + 1,
                error,
            )
