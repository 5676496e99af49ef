"""Prometheus metrics for GET /metrics (prometheus_client's text format).

The request path only bumps plain integers in dicts and lists (no locks, no label lookups);
prometheus_client builds the metric families from them when a scrape asks, through a custom
collector on a registry of this relay's own (tests run many relays in one process).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from relayd.domain.models import Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Histogram:
    """Bucket counts and a sum, kept as plain numbers (cumulated only when scraped)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class Metrics:
    """What the relay counts. One per Relay; the handlers, the store and workers feed it."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.messages_sent = 0
        self.deliveries = 0
        self.claims = 0
        self.commits = Histogram(BATCH_BUCKETS)
        self.callbacks: dict[str, int] = {}
        self.sse_connections: Callable[[], int] = lambda: 0
        self._newest_message = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    # ------------------------------------------------------------------ feeding

    def request(self, route: str, method: str, status: int, seconds: float | None) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if seconds is not None:
            histogram = self.latency.get((route, method))
            if histogram is None:
                histogram = self.latency[(route, method)] = Histogram(LATENCY_BUCKETS)
            histogram.observe(seconds)

    def committed(self, batch_size: int) -> None:
        self.commits.observe(batch_size)

    def events(self, events: Sequence[Event]) -> None:
        """Committed events, as the store hands them to the bus: messages and claims."""
        for event in events:
            kind = event.type
            if kind == "message.new":
                message_id = event.data.get("id", 0)
                if message_id > self._newest_message:  # a late delivery keeps its older id
                    self._newest_message = message_id
                    self.messages_sent += 1
                audience = event.audience
                self.deliveries += 0 if audience is None else len(audience)
            elif kind == "message.claimed":
                self.claims += 1

    def callback(self, outcome: str) -> None:
        self.callbacks[outcome] = self.callbacks.get(outcome, 0) + 1

    # ------------------------------------------------------------------ scraping

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        requests = CounterMetricFamily(
            "relay_http_requests", "HTTP requests by route, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in sorted(m.requests.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "relay_http_request_duration_seconds",
            "HTTP request latency by route and method (SSE streams excluded)",
            labels=["route", "method"],
        )
        for (route, method), histogram in sorted(m.latency.items()):
            latency.add_metric([route, method], histogram.buckets(), histogram.total)
        yield latency
        yield CounterMetricFamily(
            "relay_messages_sent", "messages stored (sends, task messages, pair messages)",
            value=m.messages_sent,
        )
        yield CounterMetricFamily(
            "relay_messages_delivered", "message deliveries: recipients summed over messages,"
            " late deliveries included", value=m.deliveries,
        )
        yield CounterMetricFamily(
            "relay_claims", "successful claims of claimable messages (task claims included)",
            value=m.claims,
        )
        yield GaugeMetricFamily(
            "relay_sse_connections", "open SSE streams", value=m.sse_connections()
        )
        batches = HistogramMetricFamily(
            "relay_commit_batch_size", "writes per group commit (one fsync each)"
        )
        batches.add_metric([], m.commits.buckets(), m.commits.total)
        yield batches
        callbacks = CounterMetricFamily(
            "relay_callback_deliveries",
            "callback delivery attempts by outcome (delivered, failed: retried later, dead)",
            labels=["outcome"],
        )
        for outcome in ("delivered", "failed", "dead"):
            callbacks.add_metric([outcome], m.callbacks.get(outcome, 0))
        yield callbacks
