"""The Codex provider: `relayctl codex` runs Codex on its app-server with a sidecar that
bridges the thread to the relay (see docs/providers.md, "Codex")."""
