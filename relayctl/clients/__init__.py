"""How relayctl talks to relayd: the HTTP API, its SSE stream, the control plane."""
