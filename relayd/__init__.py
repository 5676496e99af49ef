"""Agent Relay daemon (relayd): the HTTP API, SSE, storage and the control plane."""

__version__ = "0.1.0"
