"""What the parts of a running relay share: settings, storage, the bus, metrics, the channels.

The Relay (relayd/daemon/relay.py) builds one and hands it to each part it assembles; the HTTP
app keeps it under an app key (relayd/http/keys.py). Every field is typed: a part that needs
something the context lacks gets it as an argument from the Relay, not through the context.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, field

from relayd.bus import EventBus
from relayd.channels.base import Channel
from relayd.config.settings import Settings
from relayd.metrics import Metrics
from relayd.storage.base import Store


@dataclass
class Context:
    settings: Settings  # replaced as a whole on reload
    store: Store
    bus: EventBus
    metrics: Metrics = field(default_factory=Metrics)
    channels: list[Channel] = field(default_factory=list)  # bridges, started by the Relay
    started_at: float = field(default_factory=time.time)
    sse_connections: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # names this process among the replicas of one relay (several relayd on one PostgreSQL)
    replica_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def uptime_seconds(self) -> float:
        return round(time.time() - self.started_at, 3)
