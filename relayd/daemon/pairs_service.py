"""Pair sessions as a relay service: the reaper job that expires invites, and /stats counts."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Protocol

from relayd.daemon.context import Context
from relayd.daemon.jobs import Reaper


class Relay(Protocol):
    """What install() uses of the relay it wires into (relayd.daemon.relay.Relay is one)."""

    ctx: Context
    reaper: Reaper

log = logging.getLogger("relayd.pairs")


def install(relay: Relay) -> None:
    relay.reaper.add_job("pairs", partial(reap_pairs, relay.ctx))
    relay.ctx.extras.setdefault("stats_providers", []).append(partial(pair_stats, relay.ctx))


async def reap_pairs(ctx: Context) -> dict[str, int]:
    """Pending invites older than pending_pair_ttl_ms expire; orphaned pairs end."""
    outcome = await ctx.store.reap_pairs(ctx.settings.pending_pair_ttl_ms)
    counts = {name: len(pairs) for name, pairs in outcome.items()}
    if any(counts.values()):
        log.info(
            "pairs: %d invites expired, %d orphaned pairs ended",
            counts["expired"],
            counts["ended"],
        )
    return counts


async def pair_stats(ctx: Context) -> dict[str, Any]:
    return {"pairs": await ctx.store.pair_counts()}
