"""Provider files shipped in the wheel as ``agent_relay_providers``: the Claude Code plugin
(claude/) and the marketplace that lists it (.claude-plugin/marketplace.json)."""
