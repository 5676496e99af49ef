"""The OpenAPI operations of the contract, as data: an API path (without the ``/api`` prefix)
and a method to its operation, built from the components."""

from __future__ import annotations

from typing import Any

from relayd.http.openapi.components import (
    AGENT_FILTERS,
    AGENT_ID,
    MESSAGE_FILTERS,
    NO_CONTENT,
    PAGE_FILTERS,
    PAIR_STATUSES,
    TASK_STATUSES,
    answer,
    errors,
    json_body,
    one_or_more_of,
    param,
    query,
    ref,
    request_body,
    text,
)

# --------------------------------------------------------------------------- operations

AGENTS: dict[str, dict[str, Any]] = {
    "/agents": {
        "post": {
            "operationId": "registerAgent",
            "summary": "Register or update an agent by id (marks it online)",
            "requestBody": request_body("AgentRegistration"),
            "responses": {
                "201": answer("registered", "Agent"),
                "200": answer("already registered: updated, unread messages kept", "Agent"),
                **errors(400, 413),
            },
        },
        "get": {
            "operationId": "listAgents",
            "summary": "List agents, optionally filtered",
            "parameters": AGENT_FILTERS,
            "responses": {"200": answer("the agents", "AgentList"), **errors(400)},
        },
    },
    "/agents/find": {
        "get": {
            "operationId": "findAgents",
            "summary": "Agents with a capability that are not offline",
            "parameters": [
                query("capability", text(1024), "the capability", required=True),
                *[p for p in AGENT_FILTERS if p["name"] != "capability"],
            ],
            "responses": {"200": answer("the agents", "AgentList"), **errors(400)},
        },
    },
    "/agents/{id}": {
        "parameters": [param("AgentIdPath")],
        "get": {
            "operationId": "getAgent",
            "responses": {"200": answer("the agent", "Agent"), **errors(404)},
        },
        "patch": {
            "operationId": "updateAgent",
            "summary": "Change any of label, tags, capabilities, channels, status, approval, meta",
            "requestBody": request_body("AgentChanges"),
            "responses": {"200": answer("the agent", "Agent"), **errors(400, 404, 409, 413)},
        },
        "delete": {
            "operationId": "deleteAgent",
            "summary": "Remove an agent (event agent.removed)",
            "responses": {**NO_CONTENT, **errors(404)},
        },
    },
    "/agents/{id}/heartbeat": {
        "parameters": [param("AgentIdPath")],
        "post": {
            "operationId": "heartbeat",
            "summary": "Refresh lastSeenAt, optionally set status; 404 means register again, "
            "409 that a newer session took over",
            "requestBody": request_body("Heartbeat", required=False),
            "responses": {"200": answer("the agent", "Agent"), **errors(400, 404, 409, 413)},
        },
    },
    "/agents/{id}/label": {
        "parameters": [param("AgentIdPath")],
        "patch": {
            "operationId": "setAgentLabel",
            "requestBody": request_body("Label"),
            "responses": {"200": answer("the agent", "Agent"), **errors(400, 404, 413)},
        },
    },
}

MESSAGES: dict[str, dict[str, Any]] = {
    "/messages": {
        "post": {
            "operationId": "sendMessage",
            "summary": "Send a message to an agent or a selector",
            "parameters": [param("IdempotencyKey")],
            "requestBody": request_body("NewMessage"),
            "responses": {
                "201": answer("stored and delivered", "SentMessage"),
                "200": answer("a repeated Idempotency-Key: the original message", "SentMessage"),
                **errors(400, 404, 413, 422),
            },
        },
        "get": {
            "operationId": "listMessages",
            "summary": "An inbox (?for=) or all messages; ?wait= long-polls",
            "parameters": MESSAGE_FILTERS,
            "responses": {"200": answer("the messages", "MessageList"), **errors(400, 404)},
        },
    },
    "/messages/cursor": {
        "get": {
            "operationId": "messageCursor",
            "summary": "The latest message id (0 when empty)",
            "responses": {"200": answer("the cursor", "Cursor")},
        },
    },
    "/messages/{id}": {
        "parameters": [param("IdPath")],
        "get": {
            "operationId": "getMessage",
            "responses": {"200": answer("the message", "Message"), **errors(404)},
        },
        "patch": {
            "operationId": "markMessage",
            "summary": "Mark read/unread and/or delivered for one recipient",
            "requestBody": request_body("ReadMark"),
            "responses": {
                "200": answer("the message with read, readAt, delivered, deliveredAt",
                              "Message"),
                **errors(400, 404, 413),
            },
        },
        "delete": {
            "operationId": "deleteMessage",
            "summary": "Delete a message (event message.deleted)",
            "responses": {**NO_CONTENT, **errors(404)},
        },
    },
    "/messages/{id}/thread": {
        "parameters": [param("IdPath")],
        "get": {
            "operationId": "messageThread",
            "summary": "The thread's root and every descendant, oldest first",
            "parameters": PAGE_FILTERS,
            "responses": {"200": answer("the thread", "Thread"), **errors(400, 404)},
        },
    },
    "/messages/{id}/claim": {
        "parameters": [param("IdPath")],
        "post": {
            "operationId": "claimMessage",
            "summary": "Claim a claimable message: exactly one agent ever wins",
            "requestBody": request_body("Claim"),
            "responses": {
                "200": answer("claimed by this agent (also when it claims again)", "Message"),
                **errors(400, 404, 409, 413),
            },
        },
    },
}

EVENTS_AND_SYSTEM: dict[str, dict[str, Any]] = {
    "/events": {
        "get": {
            "operationId": "streamEvents",
            "summary": "Server-Sent Events: the firehose, or what one agent should see",
            "parameters": [
                query("for", AGENT_ID, "only events this agent should see"),
                param("LastEventId"),
                query(
                    "lastEventId",
                    {"type": "string", "pattern": "^[0-9]+$"},
                    "the same as the Last-Event-ID header, for clients that cannot set it",
                ),
            ],
            "responses": {
                "200": {
                    "description": "an endless text/event-stream; `id:` `event:` `data:` frames"
                    " and `:` comment lines at least every 15 s",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **errors(400),
            },
        },
    },
    "/stats": {
        "get": {
            "operationId": "stats",
            "responses": {"200": answer("counters", "Stats")},
        },
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (text exposition format); also served at /metrics",
            "description": "requests by route, method and status; latency histograms; messages"
            " sent and delivered; claims; open SSE streams; group-commit batch sizes; callback"
            " deliveries by outcome",
            "responses": {
                "200": {
                    "description": "Prometheus text format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            },
        },
    },
    "/health": {
        "get": {
            "operationId": "health",
            "responses": {
                "200": answer("serving", "Health"),
                "503": {
                    "description": "storage not usable, or shutting down",
                    "content": json_body({"allOf": [ref("Health"), ref("Error")]}),
                },
            },
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "the OpenAPI 3.1 document",
                    "content": json_body({"type": "object"}),
                }
            },
        },
    },
}

PAIRS: dict[str, dict[str, Any]] = {
    "/pairs": {
        "post": {
            "operationId": "createPair",
            "summary": "Invite an agent that is not offline to a pair session",
            "parameters": [param("IdempotencyKey")],
            "requestBody": request_body("NewPair"),
            "responses": {
                "201": answer("pending; the partner gets an invite message", "Pair"),
                "200": answer("a repeated Idempotency-Key: the original pair", "Pair"),
                **errors(400, 404, 409, 413, 422),
            },
        },
        "get": {
            "operationId": "listPairs",
            "parameters": [
                query("agent", AGENT_ID, "pairs this agent takes part in"),
                query(
                    "status",
                    {"type": "string", "pattern": one_or_more_of(PAIR_STATUSES)},
                    "pairs in this status, or a comma list of statuses",
                    empty=True,
                ),
                param("Limit"),
            ],
            "responses": {"200": answer("the pairs", "PairList"), **errors(400)},
        },
    },
    "/pairs/{id}": {
        "parameters": [param("IdPath")],
        "get": {
            "operationId": "getPair",
            "responses": {"200": answer("the pair", "Pair"), **errors(404)},
        },
    },
    **{
        f"/pairs/{{id}}/{action}": {
            "parameters": [param("IdPath")],
            "post": {
                "operationId": f"{action}Pair",
                "summary": summary,
                "requestBody": request_body(body),
                "responses": {"200": answer("the pair", "Pair"), **errors(400, 404, 409, 413)},
            },
        }
        for action, body, summary in (
            ("accept", "PairActor", "The partner accepts: pending → active"),
            ("reject", "PairActorWithReason", "The partner rejects: pending → rejected"),
            ("hangup", "PairActorWithReason", "A participant ends it: → ended"),
        )
    },
    "/pairs/{id}/messages": {
        "parameters": [param("IdPath")],
        "post": {
            "operationId": "sendPairMessage",
            "summary": "A participant of an active pair writes to the other",
            "parameters": [param("IdempotencyKey")],
            "requestBody": request_body("PairMessage"),
            "responses": {
                "201": answer("delivered to the other participant", "SentMessage"),
                "200": answer("a repeated Idempotency-Key: the original message", "SentMessage"),
                **errors(400, 404, 409, 413, 422),
            },
        },
    },
}

TASKS: dict[str, dict[str, Any]] = {
    "/tasks": {
        "get": {
            "operationId": "listTasks",
            "parameters": [
                query("status", {"type": "string", "enum": TASK_STATUSES}, "tasks in this status"),
                query("source", text(128), "tasks from this integration", empty=True),
                query("target", text(256), "tasks sent to this target", empty=True),
                param("Limit"),
            ],
            "responses": {"200": answer("the tasks", "TaskList"), **errors(400)},
        },
    },
    "/tasks/{id}": {
        "parameters": [param("IdPath")],
        "get": {
            "operationId": "getTask",
            "responses": {"200": answer("the task", "Task"), **errors(404)},
        },
    },
    "/tasks/{id}/events": {
        "parameters": [param("IdPath")],
        "get": {
            "operationId": "taskEvents",
            "summary": "The task's history, oldest first",
            "parameters": PAGE_FILTERS,
            "responses": {"200": answer("the events", "TaskEventList"), **errors(400, 404)},
        },
    },
    "/tasks/{id}/claim": {
        "parameters": [param("IdPath")],
        "post": {
            "operationId": "claimTask",
            "summary": "Claim a task (and its message): one winner",
            "requestBody": request_body("Claim"),
            "responses": {"200": answer("the task", "Task"), **errors(400, 404, 409, 413)},
        },
    },
    "/tasks/{id}/status": {
        "parameters": [param("IdPath")],
        "patch": {
            "operationId": "setTaskStatus",
            "summary": "The claimer moves the task along",
            "requestBody": request_body("TaskStatusChange"),
            "responses": {"200": answer("the task", "Task"), **errors(400, 404, 409, 413)},
        },
    },
}

INTEGRATIONS: dict[str, dict[str, Any]] = {
    "/integrations/events": {
        "post": {
            "operationId": "ingestEvent",
            "summary": "An integration reports an event: a new, deduplicated or resolved task",
            "parameters": [param("IdempotencyKey")],
            "requestBody": request_body("IntegrationEvent"),
            "responses": {
                "201": answer("a new task and its claimable message", "IngestResult"),
                "200": answer("deduplicated or resolved", "IngestResult"),
                **errors(400, 404, 413, 429, 422),
            },
        },
    },
    "/integrations": {
        "get": {
            "operationId": "listIntegrations",
            "responses": {"200": answer("configured and observed", "IntegrationList")},
        },
    },
    "/channels": {
        "get": {
            "operationId": "listChannels",
            "responses": {"200": answer("communication channels", "ChannelList")},
        },
    },
}

OPERATIONS: dict[str, dict[str, Any]] = {
    **AGENTS,
    **MESSAGES,
    **EVENTS_AND_SYSTEM,
    **PAIRS,
    **TASKS,
    **INTEGRATIONS,
}

TAGS_BY_PREFIX = {
    "/agents": "agents",
    "/messages": "messages",
    "/events": "events",
    "/pairs": "pairs",
    "/tasks": "tasks",
    "/integrations": "integrations",
    "/channels": "integrations",
}

