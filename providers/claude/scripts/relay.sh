#!/bin/sh
# The plugin's only entry point: hand over to relayctl, which holds all the logic.
# Without relayctl on PATH, say so in one line and leave the session alone (exit 0).
if command -v relayctl >/dev/null 2>&1; then
  exec relayctl claude "$@"
fi
echo "agent-relay: relayctl is not on PATH; install Agent Relay (pipx install agent-relay, or pip install agent-relay) and make sure relayctl is on PATH" >&2
exit 0
