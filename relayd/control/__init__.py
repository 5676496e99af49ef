"""The admin control plane: HTTP+JSON under /v1 on a private Unix socket, or loopback TCP."""
