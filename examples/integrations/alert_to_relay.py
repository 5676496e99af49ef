#!/usr/bin/env python3
"""Post an alert to Agent Relay as an integration, then print its signed callbacks.

The integration is configured on the relay, for example:

    AGENT_RELAY_INTEGRATIONS='[{"name": "monitor", "token": "monitor-token-123",
      "scopes": ["tasks:create"], "targets": ["tag:oncall"],
      "callbackUrl": "http://127.0.0.1:8787/relay-callback",
      "callbackSecret": "callback-secret"}]' relayd

Then:

    python examples/integrations/alert_to_relay.py --token monitor-token-123 \\
        --secret callback-secret --title "disk full on db1" --dedupe-key disk:db1

    python examples/integrations/alert_to_relay.py --token monitor-token-123 \\
        --dedupe-key disk:db1 --resolve            # the alert cleared: the task becomes done

The script listens on --listen for callbacks, checks each X-Agent-Relay-Signature against the
exact body bytes, drops repeated X-Agent-Relay-Delivery ids (delivery is at-least-once), and
exits when the task is finished or after --wait seconds. Needs only aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
from typing import Any

import aiohttp
from aiohttp import web

FINISHED = {"done", "failed", "cancelled"}


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


class CallbackPrinter:
    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.seen: set[str] = set()
        self.finished = asyncio.Event()
        self.task_id: int | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # verify the raw bytes, before any JSON parsing
        if self.secret and not signature_ok(
            self.secret, body, request.headers.get("X-Agent-Relay-Signature")
        ):
            print("rejected a callback with a bad signature", file=sys.stderr)
            return web.Response(status=401)
        delivery = request.headers.get("X-Agent-Relay-Delivery", "")
        if delivery in self.seen:
            return web.Response(status=204)  # a retry of something already handled
        self.seen.add(delivery)
        payload = json.loads(body)
        task = payload["task"]
        print(f"{payload['at']}  {payload['event']:<22} task {task['id']}  status={task['status']}"
              f"  claimedBy={task['claimedBy']}  occurrences={task['occurrenceCount']}")
        if task["id"] == self.task_id and task["status"] in FINISHED:
            self.finished.set()
        return web.Response(status=204)


async def post_event(args: argparse.Namespace) -> dict[str, Any]:
    event: dict[str, Any] = {"type": args.type, "dedupeKey": args.dedupe_key}
    if args.resolve:
        event["status"] = "resolved"
    else:
        event.update(title=args.title, target=args.target, severity=args.severity,
                     body=args.body or args.title)
    headers = {"Authorization": f"Bearer {args.token}"}
    async with aiohttp.ClientSession() as session, session.post(
        f"{args.relay.rstrip('/')}/api/integrations/events", json=event, headers=headers
    ) as resp:
        answer: dict[str, Any] = await resp.json()
        if resp.status == 429:
            raise SystemExit(f"rate limited: retry in {resp.headers.get('Retry-After')} s")
        if resp.status >= 400:
            raise SystemExit(f"relay refused the event ({resp.status}): {answer.get('error')}")
        return answer


async def main(args: argparse.Namespace) -> int:
    printer = CallbackPrinter(args.secret)
    app = web.Application()
    app.router.add_post(args.path, printer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    host, _, port = args.listen.rpartition(":")
    await web.TCPSite(runner, host, int(port)).start()
    try:
        answer = await post_event(args)
        task = answer["task"]
        printer.task_id = task["id"]
        kind = "deduplicated into" if answer["deduped"] else "posted as"
        print(f"event {kind} task {task['id']} ({task['status']}); waiting for callbacks")
        try:
            await asyncio.wait_for(printer.finished.wait(), args.wait)
        except TimeoutError:
            print(f"no finishing callback within {args.wait:g} s")
    finally:
        await runner.cleanup()
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay", default="http://127.0.0.1:4850")
    parser.add_argument("--token", required=True, help="the integration's token")
    parser.add_argument("--secret", help="callbackSecret, to verify signatures")
    parser.add_argument("--type", default="alert")
    parser.add_argument("--title", default="something needs attention")
    parser.add_argument("--body")
    parser.add_argument("--target", default="tag:oncall")
    parser.add_argument("--severity", default="warning")
    parser.add_argument("--dedupe-key", default="example-alert")
    parser.add_argument("--resolve", action="store_true", help="send status=resolved")
    parser.add_argument("--listen", default="127.0.0.1:8787", help="callback receiver address")
    parser.add_argument("--path", default="/relay-callback")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for callbacks")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
