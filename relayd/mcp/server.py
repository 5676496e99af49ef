"""The relay's tools as an MCP SDK server (the low-level `Server`: the tools are a fixed table,
their arguments are checked by the relay's own validators, so the API's error sentences reach
the model unchanged).

Importing this module imports the SDK (tens of MB): relayd does it when /mcp is first used,
`relayctl mcp` when it starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from relayd import __version__
from relayd.mcp.specs import BY_NAME, INBOX_NOTE, INSTRUCTIONS, TOOLS, ToolFailure, ToolSpec

log = logging.getLogger("relayd.mcp")
# The SDK logs each stateless request at INFO ("Terminating session: None"): warnings only.
logging.getLogger("mcp").setLevel(logging.WARNING)

# (tool, its arguments, the transport's request: a starlette Request on HTTP, None on stdio)
# -> the API-shaped answer; raises ToolFailure.
ToolCaller = Callable[[ToolSpec, dict[str, Any], Any], Awaitable[dict[str, Any]]]


def tool_list(session_agent: bool) -> list[types.Tool]:
    return [
        types.Tool(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            input_schema=spec.input_schema(session_agent=session_agent),
            annotations=types.ToolAnnotations(
                title=spec.title, read_only_hint=spec.read_only, open_world_hint=False
            ),
        )
        for spec in TOOLS
    ]


def success(spec: ToolSpec, payload: dict[str, Any]) -> types.CallToolResult:
    """Structured content shaped like the API's JSON, and the same JSON as text for clients
    that only read text; inbox answers first say that message bodies are another party's."""
    content: list[types.ContentBlock] = []
    if spec.name == "relay_inbox" and payload.get("messages"):
        content.append(types.TextContent(type="text", text=INBOX_NOTE))
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    content.append(types.TextContent(type="text", text=text))
    return types.CallToolResult(content=content, structured_content=payload)


def failure(exc: ToolFailure) -> types.CallToolResult:
    """An error result: the API's sentence as text, the API's error JSON as structured content."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=exc.message)],
        structured_content=exc.payload(),
        is_error=True,
    )


def build_server(call: ToolCaller, *, session_agent: bool = False) -> Server[Any]:
    """The SDK server whose tools run through `call` (relayd: in process; relayctl: the API)."""
    tools = tool_list(session_agent)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        spec = BY_NAME.get(params.name)
        if spec is None:
            return failure(ToolFailure(f"no tool named '{params.name}'", "not_found", 404))
        try:
            payload = await call(spec, dict(params.arguments or {}), ctx.request)
        except ToolFailure as exc:
            return failure(exc)
        except Exception:
            log.exception("MCP tool %s failed", spec.name)
            return failure(ToolFailure("internal error", "internal", 500))
        return success(spec, payload)

    return Server(
        "agent-relay",
        version=__version__,
        title="Agent Relay",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def http_session_manager(call: ToolCaller, max_body_bytes: int) -> StreamableHTTPSessionManager:
    """The streamable HTTP transport relayd mounts at /mcp: stateless (no per-client state, so
    any replica answers any request) with plain JSON answers. Host and Origin are checked by
    relayd's own middleware for every route, /mcp included, so the SDK's check stays off."""
    return StreamableHTTPSessionManager(
        app=build_server(call),
        stateless=True,
        json_response=True,
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=max_body_bytes,
    )
