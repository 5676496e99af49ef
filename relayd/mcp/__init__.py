"""The relay's Model Context Protocol tools: served by relayd at /mcp (streamable HTTP) and by
`relayctl mcp` on stdio.

`specs` (names, descriptions, input schemas, scopes) and `asgi` (the aiohttp → ASGI bridge)
import neither the MCP SDK nor anything heavy; `server` builds the SDK server and is imported
only when MCP is first used, so an idle relayd does not pay for the SDK.
"""
