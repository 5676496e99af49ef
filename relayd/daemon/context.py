"""What the HTTP handlers, the reaper and the control plane share: one object on the app."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relayd.bus import EventBus
from relayd.config.settings import Settings
from relayd.http.browser_guard import BrowserPolicy, policy_for
from relayd.metrics import Metrics
from relayd.storage.base import Store

if TYPE_CHECKING:
    from relayd.channels import Channel


@dataclass
class Context:
    settings: Settings
    store: Store
    bus: EventBus
    started_at: float = field(default_factory=time.time)
    sse_connections: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    extras: dict[str, Any] = field(default_factory=dict)  # services added by later layers
    channels: list[Channel] = field(default_factory=list)  # bridges, started by the Relay
    # the browser rules of `settings`, rebuilt when a reload replaces them
    browser: tuple[Settings, BrowserPolicy] | None = None

    @property
    def browser_policy(self) -> BrowserPolicy:
        cached = self.browser
        if cached is None or cached[0] is not self.settings:
            cached = self.browser = (self.settings, policy_for(self.settings))
        return cached[1]

    @property
    def uptime_seconds(self) -> float:
        return round(time.time() - self.started_at, 3)

