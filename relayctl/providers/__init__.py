"""Providers: what connects a running AI session (Claude Code, Codex) to the relay."""
