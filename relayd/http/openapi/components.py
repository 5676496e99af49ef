"""The reusable parts of the OpenAPI document: schemas, request bodies, parameters, responses.

Nothing here knows the router or the operations (relayd.http.openapi.operations describes
those, relayd.http.openapi.document emits the ones whose route is served).
"""

from __future__ import annotations

from typing import Any

from relayd.domain import models, pairs, tasks

Schema = dict[str, Any]

AGENT_ID_PATTERN = "^[A-Za-z0-9._:@-]{1,128}$"
# `<agentId>`, `id:<agentId>`, `broadcast`, or `tag:` `cap:` `label:` `machine:` + a value.
TARGET_PATTERN = r"^(broadcast|(tag|cap|label|machine):[\s\S]+|(id:)?[A-Za-z0-9._:@-]{1,128})$"
MAX_ID = 2**63 - 1
# the status words come from the domain, so the document cannot drift from the rules
AGENT_STATUSES = list(models.AGENT_STATUSES)
APPROVALS = list(models.APPROVALS)
PAIR_STATUSES = list(pairs.PAIR_STATUSES)
TASK_STATUSES = list(tasks.STATUSES)
ERROR_CODES = [
    "invalid_json",
    "invalid_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "already_claimed",
    "busy",
    "ambiguous_target",
    "invalid_state",
    "payload_too_large",
    "unsupported_media_type",
    "idempotency_mismatch",
    "rate_limited",
    "unavailable",
]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """The same schema, also accepting null (the handlers treat null as 'not given')."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    widened = {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}
    if "enum" in schema:
        widened["enum"] = [*schema["enum"], None]
    return widened


def text(max_length: int, **extra: Any) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_length, **extra}


def string_list(max_items: int = 64) -> Schema:
    return {"type": "array", "maxItems": max_items, "items": text(128)}


def one_or_more_of(words: list[str]) -> str:
    """A pattern for one word or a comma list of them (blank allowed: no filter)."""
    word = rf"\s*({'|'.join(words)})\s*"
    return rf"^({word}(,{word})*)?$"


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


def wrapped(key: str, item: str, **more: Schema) -> Schema:
    """A list answer: `{"<key>": [<item>...], ...more}`."""
    return obj({key: {"type": "array", "items": ref(item)}, **more}, [key, *more])


TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "ISO-8601 UTC with milliseconds and a Z suffix",
}
OPTIONAL_TIMESTAMP = nullable(TIMESTAMP)
POSITIVE_ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
AGENT_ID: Schema = {"type": "string", "pattern": AGENT_ID_PATTERN}
META: Schema = {
    "type": "object",
    "description": "free-form JSON object, at most 16 KiB serialized and 32 levels deep",
}
COUNT: Schema = {"type": "integer", "minimum": 0}

# --------------------------------------------------------------------------- object schemas

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": {"type": "string", "description": "a sentence for people"},
            "code": {"type": "string", "enum": ERROR_CODES},
            "claimedBy": {"type": "string", "description": "with already_claimed"},
            "candidates": {
                "type": "array",
                "items": {"type": "string"},
                "description": "with ambiguous_target: the matching agent ids",
            },
            "agent": {"type": "string", "description": "with busy: the agent already paired"},
            "pairId": {**POSITIVE_ID, "description": "with busy: its open pair"},
        },
        ["error", "code"],
    ),
    "Agent": obj(
        {
            "id": AGENT_ID,
            "label": nullable({"type": "string"}),
            "machine": nullable({"type": "string"}),
            "project": nullable({"type": "string"}),
            "provider": nullable({"type": "string"}),
            "tags": {"type": "array", "items": {"type": "string"}},
            "capabilities": {"type": "array", "items": {"type": "string"}},
            "channels": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string", "enum": AGENT_STATUSES},
            "approval": {"type": "string", "enum": APPROVALS},
            "meta": {"type": "object"},
            "version": nullable({"type": "string"}),
            "registeredAt": TIMESTAMP,
            "lastSeenAt": TIMESTAMP,
            "epoch": {**POSITIVE_ID, "description": "session guard: grows each time a "
                      "registration with a new instanceId takes the agent over"},
            "instanceId": nullable({"type": "string", "description": "the provider instance "
                                    "holding the current epoch"}),
        },
        [
            "id", "label", "machine", "project", "provider", "tags", "capabilities",
            "channels", "status", "approval", "meta", "version", "registeredAt", "lastSeenAt",
        ],
    ),
    "Message": obj(
        {
            "id": POSITIVE_ID,
            "from": {"type": "string"},
            "to": {"type": "string"},
            "subject": nullable({"type": "string"}),
            "body": {"type": "string"},
            "channel": nullable({"type": "string"}),
            "replyTo": nullable(POSITIVE_ID),
            "threadId": POSITIVE_ID,
            "claimable": {"type": "boolean"},
            "claimedBy": nullable({"type": "string"}),
            "claimedAt": OPTIONAL_TIMESTAMP,
            "createdAt": TIMESTAMP,
            "meta": {"type": "object"},
            "sentBy": nullable({
                "type": "string",
                "description": "the principal that authenticated the send: admin,"
                " integration:<name>, local (a token-less relay) or channel:<name> (a bridge);"
                " `from` is only the name the sender chose. null for messages stored before"
                " provenance was recorded",
            }),
            "taskId": {**POSITIVE_ID, "description": "present when the message belongs to a task"},
            "read": {"type": "boolean", "description": "inbox listings (?for=) and PATCH only"},
            "readAt": {**OPTIONAL_TIMESTAMP, "description": "inbox listings and PATCH only"},
            "delivered": {"type": "boolean",
                          "description": "inbox listings and PATCH only: its provider "
                          "delivered it into the session"},
            "deliveredAt": {**OPTIONAL_TIMESTAMP,
                            "description": "inbox listings and PATCH only"},
            "deliveries": {
                "type": "array",
                "description": "thread answers only: each recipient and its read state",
                "items": obj({"agent": {"type": "string"}, "read": {"type": "boolean"},
                              "readAt": OPTIONAL_TIMESTAMP}, ["agent", "read", "readAt"]),
            },
        },
        [
            "id", "from", "to", "subject", "body", "channel", "replyTo", "threadId",
            "claimable", "claimedBy", "claimedAt", "createdAt", "meta", "sentBy",
        ],
    ),
    "SentMessage": {
        "allOf": [
            ref("Message"),
            obj(
                {"recipients": {"type": "array", "items": AGENT_ID}},
                ["recipients"],
                description="the message plus the agent ids it was delivered to",
            ),
        ]
    },
    "AgentList": obj({
        "agents": {"type": "array", "items": ref("Agent")},
        "next": {"type": "string", "description": "only when more agents follow: pass it as"
                 " ?after="},
    }, ["agents"]),
    "MessageList": wrapped(
        "messages",
        "Message",
        cursor={**COUNT, "description": "highest id returned, else the latest message id"},
    ),
    "Thread": obj({
        "messages": {"type": "array", "items": ref("Message")},
        "next": {**POSITIVE_ID, "description": "only when more follow: pass it as ?since="},
    }, ["messages"]),
    "Cursor": obj({"cursor": COUNT}, ["cursor"]),
    "Health": obj(
        {
            "status": {"type": "string", "enum": ["ok", "stopping", "unavailable"]},
            "version": {"type": "string"},
            "staleTtlMs": {"type": "integer", "description": "STALE_TTL_MS: providers "
                           "heartbeat at least every third of it"},
        },
        ["status", "version"],
    ),
    "Stats": obj(
        {
            "version": {"type": "string"},
            "uptimeSeconds": {"type": "number", "minimum": 0},
            "agents": obj({"total": COUNT, "online": COUNT, "offline": COUNT},
                          ["total", "online", "offline"]),
            "messages": obj({"total": COUNT, "unread": COUNT}, ["total", "unread"]),
            "tasks": {"type": "object", "description": "task counts by status"},
            "pairs": {"type": "object", "description": "pair counts by status"},
            "sse": obj({"connections": COUNT}, ["connections"]),
            "messageRate": obj(
                {"bucketSeconds": COUNT, "until": TIMESTAMP,
                 "counts": {"type": "array", "items": COUNT}},
                ["bucketSeconds", "until", "counts"],
                description="messages per minute over the last hour, oldest first",
            ),
        },
        ["version", "uptimeSeconds", "agents", "messages", "tasks", "pairs", "sse"],
    ),
    "Pair": obj(
        {
            "id": POSITIVE_ID,
            "status": {"type": "string", "enum": PAIR_STATUSES},
            "initiator": {"type": "string"},
            "partner": {"type": "string"},
            "objective": nullable({"type": "string"}),
            "createdAt": TIMESTAMP,
            "acceptedAt": OPTIONAL_TIMESTAMP,
            "endedAt": OPTIONAL_TIMESTAMP,
            "endedBy": nullable({"type": "string"}),
            "reason": nullable({"type": "string"}),
            "inviteMessageId": nullable(POSITIVE_ID),
        },
        [
            "id", "status", "initiator", "partner", "objective", "createdAt", "acceptedAt",
            "endedAt", "endedBy", "reason",
        ],
    ),
    "PairList": wrapped("pairs", "Pair"),
    "Task": obj(
        {
            "id": POSITIVE_ID,
            "source": {"type": "string"},
            "type": {"type": "string"},
            "severity": nullable({"type": "string"}),
            "dedupeKey": nullable({"type": "string"}),
            "title": {"type": "string"},
            "body": nullable({"type": "string"}),
            "target": {"type": "string"},
            "channel": nullable({"type": "string"}),
            "status": {"type": "string", "enum": TASK_STATUSES},
            "claimedBy": nullable({"type": "string"}),
            "claimedAt": OPTIONAL_TIMESTAMP,
            "progress": {"description": "free-form progress report from the claimer"},
            "result": {"description": "free-form result from the claimer"},
            "occurrenceCount": {"type": "integer", "minimum": 1},
            "firstSeenAt": TIMESTAMP,
            "lastSeenAt": TIMESTAMP,
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
            "messageId": nullable(POSITIVE_ID),
            "meta": {"type": "object"},
        },
        [
            "id", "source", "type", "severity", "dedupeKey", "title", "body", "target",
            "channel", "status", "claimedBy", "claimedAt", "progress", "result",
            "occurrenceCount", "firstSeenAt", "lastSeenAt", "createdAt", "updatedAt",
            "messageId", "meta",
        ],
    ),
    "TaskList": wrapped("tasks", "Task"),
    "TaskEvent": obj(
        {
            "id": POSITIVE_ID,
            "taskId": POSITIVE_ID,
            "type": {"type": "string"},
            "actor": nullable({"type": "string"}),
            "data": {"description": "what changed"},
            "createdAt": TIMESTAMP,
        },
        ["id", "taskId", "type", "actor", "data", "createdAt"],
    ),
    "TaskEventList": obj({
        "events": {"type": "array", "items": ref("TaskEvent")},
        "next": {**POSITIVE_ID, "description": "only when more follow: pass it as ?since="},
    }, ["events"]),
    "IngestResult": obj(
        {
            "task": ref("Task"),
            "deduped": {"type": "boolean"},
            "replayed": {"type": "boolean", "description": "a repeated Idempotency-Key"},
        },
        ["task", "deduped"],
    ),
    "IntegrationList": obj(
        {
            "integrations": {
                "type": "array",
                "items": obj(
                    {
                        "name": {"type": "string"},
                        "configured": {"type": "boolean"},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "targets": nullable({"type": "array", "items": {"type": "string"}}),
                        "channels": nullable({"type": "array", "items": {"type": "string"}}),
                        "observed": {"type": "object"},
                        "callback": {"type": "object"},
                    },
                    ["name", "configured", "scopes"],
                    description="a configured or observed integration; never its token",
                    **{"not": {"required": ["token"]}},
                ),
            }
        },
        ["integrations"],
    ),
    "ChannelList": obj(
        {
            "channels": {
                "type": "array",
                "items": obj(
                    {
                        "name": {"type": "string"},
                        "kind": {"type": "string", "description": "bridge or message"},
                        "configured": {"type": "boolean"},
                        "state": {"type": "string"},
                    },
                    ["name", "kind", "state"],
                ),
            }
        },
        ["channels"],
    ),
}

# --------------------------------------------------------------------------- request bodies

AGENT_FIELDS: dict[str, Schema] = {
    "label": nullable(text(256)),
    "tags": nullable(string_list()),
    "capabilities": nullable(string_list()),
    "channels": nullable(string_list()),
    "status": nullable({"type": "string", "enum": AGENT_STATUSES}),
    "approval": nullable({"type": "string", "enum": APPROVALS}),
    "meta": nullable(META),
}
IDENTITY_FIELDS: dict[str, Schema] = {
    name: nullable(text(256)) for name in ("machine", "project", "provider", "version")
}
SESSION_GUARD_FIELDS: dict[str, Schema] = {
    "instanceId": nullable(text(128, description="session guard: this provider instance "
                                "(give with epoch)")),
    "epoch": nullable({**POSITIVE_ID, "description": "session guard: the epoch its "
                       "registration answered (give with instanceId); 409 when a newer "
                       "session took over"}),
}
AGENT_ACTOR = obj({"agent": AGENT_ID}, ["agent"])
AGENT_ACTOR_WITH_REASON = obj({"agent": AGENT_ID, "reason": nullable(text(1024))}, ["agent"])

BODIES: dict[str, Schema] = {
    "AgentRegistration": obj({
        "id": AGENT_ID, **AGENT_FIELDS, **IDENTITY_FIELDS,
        "instanceId": nullable(text(128, description="session guard: a new instance takes "
                                    "the agent over (the answer's epoch grows)")),
    }, ["id"]),
    "AgentChanges": obj(
        {**AGENT_FIELDS, **SESSION_GUARD_FIELDS},
        description="at least one of the fields, not null",
        anyOf=[{"required": [name]} for name in AGENT_FIELDS],
    ),
    "Heartbeat": obj({"status": nullable({"type": "string", "enum": AGENT_STATUSES}),
                      **SESSION_GUARD_FIELDS}),
    "Label": obj({"label": text(256)}, ["label"]),
    "NewMessage": obj(
        {
            "from": text(128, description="any sender name: an agent, a script, CI"),
            "to": text(256, pattern=TARGET_PATTERN),
            "body": text(65536, description="at most 64 KiB of UTF-8 (configurable)"),
            "subject": nullable(text(1024)),
            "channel": nullable(text(128)),
            "replyTo": nullable(POSITIVE_ID),
            "claimable": nullable({"type": "boolean"}),
            "meta": nullable(META),
        },
        ["from", "to", "body"],
    ),
    "Claim": AGENT_ACTOR,
    "ReadMark": obj(
        {"agent": AGENT_ID, "read": {"type": "boolean"}, "delivered": {"type": "boolean"}},
        ["agent"],
        description="read and/or delivered (at least one)",
        anyOf=[{"required": ["read"]}, {"required": ["delivered"]}],
    ),
    "NewPair": obj(
        {
            "from": AGENT_ID,
            "to": text(256, description="id:, label:, tag:, cap:, machine: or a bare word"),
            "objective": nullable(text(4096)),
        },
        ["from", "to"],
    ),
    "PairActor": AGENT_ACTOR,
    "PairActorWithReason": AGENT_ACTOR_WITH_REASON,
    "PairMessage": obj({"from": AGENT_ID, "body": text(65536)}, ["from", "body"]),
    "TaskStatusChange": obj(
        {
            "agent": AGENT_ID,
            "status": {"type": "string", "enum": TASK_STATUSES},
            "progress": {"description": "any JSON value up to 16 KiB"},
            "result": {"description": "any JSON value up to 16 KiB"},
        },
        ["agent", "status"],
    ),
    "IntegrationEvent": obj(
        {
            "type": text(128),
            "title": nullable(text(1024)),
            "target": nullable(text(256, pattern=TARGET_PATTERN)),
            "body": nullable(text(65536)),
            "severity": nullable(text(64)),
            "dedupeKey": nullable(text(256)),
            "channel": nullable(text(128)),
            "status": nullable(text(32, description='"resolved" closes the active task')),
            "source": nullable(
                text(128, description="admin token only: the source to post as (default admin)")
            ),
            "meta": nullable(META),
        },
        ["type"],
        description="title and target are required unless status is resolved, which needs"
        " dedupeKey",
        **{
            "if": {"properties": {"status": {"const": "resolved"}}, "required": ["status"]},
            "then": {"required": ["dedupeKey"], "properties": {"dedupeKey": {"type": "string"}}},
            "else": {
                "required": ["title", "target"],
                "properties": {"title": {"type": "string"}, "target": {"type": "string"}},
            },
        },
    ),
}
SCHEMAS.update(BODIES)

# --------------------------------------------------------------------------- parameters


def query(
    name: str, schema: Schema, description: str, *, required: bool = False, empty: bool = False
) -> Schema:
    """A query parameter; `empty`: an empty value (`?name=`) is accepted (see docs/api.md)."""
    parameter = {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }
    if empty:
        parameter["allowEmptyValue"] = True
    return parameter


def param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


PARAMETERS: dict[str, Schema] = {
    "AgentIdPath": {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": AGENT_ID,
        "description": "the agent id",
    },
    "IdPath": {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": POSITIVE_ID,
        "description": "a server-assigned id",
    },
    "Limit": query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        "at most this many (out of range: 400)",
        empty=True,
    ),
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        "description": "a repeat of a key the same sender used in the last 24 hours returns"
        " the original (200, same id) and delivers nothing twice; the same key with a"
        " different body is 422 idempotency_mismatch",
    },
    "LastEventId": {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "resume after this event id: what was missed is replayed first",
    },
}

AGENT_FILTERS = [
    query("tag", text(1024), "agents with this tag", empty=True),
    query("machine", text(1024), "agents on this machine", empty=True),
    query("status", {"type": "string", "enum": AGENT_STATUSES}, "agents in this status"),
    query("capability", text(1024), "agents with this capability", empty=True),
    query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        "at most this many, in id order (out of range: 400)",
        empty=True,
    ),
    query("after", text(128), "the page after this agent id: the `next` of the previous page",
          empty=True),
]
PAGE_FILTERS = [
    param("Limit"),
    query("since", {"type": "integer", "minimum": 0}, "only ids above this: the `next` of the"
          " previous page", empty=True),
]
MESSAGE_FILTERS = [
    query("for", AGENT_ID, "the inbox of this registered agent (404 if unknown)"),
    query("unread", {"type": "boolean"}, "with for=: only messages it has not read", empty=True),
    query("undelivered", {"type": "boolean"},
          "with for=: only messages its provider has not delivered yet", empty=True),
    query(
        "since",
        {"type": "integer", "minimum": 0, "maximum": MAX_ID},
        "only ids above this",
        empty=True,
    ),
    param("Limit"),
    query("channel", text(128), "only this channel", empty=True),
    query("from", text(128), "only from this sender", empty=True),
    query("thread", POSITIVE_ID, "only this thread (the root's id)", empty=True),
    query("order", {"type": "string", "enum": ["asc", "desc"], "default": "asc"}, "id order"),
    query(
        "wait",
        {"type": "integer", "minimum": 0, "maximum": 60, "default": 0},
        "long-poll up to this many seconds for a first match",
        empty=True,
    ),
]

# --------------------------------------------------------------------------- responses


def json_body(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def answer(description: str, schema_name: str) -> dict[str, Any]:
    return {"description": description, "content": json_body(ref(schema_name))}


def error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": json_body(ref("Error"))}
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Schema] = {
    "BadRequest": error_response("invalid_json or invalid_request (the message names the field)"),
    "Unauthorized": error_response(
        "unauthorized: a token is required and was missing or wrong",
        {"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "Forbidden": error_response("forbidden: the token lacks the scope, or the actor may not"),
    "NotFound": error_response("not_found"),
    "Conflict": error_response(
        "already_claimed (with claimedBy), busy, ambiguous_target (with candidates)"
        " or invalid_state"
    ),
    "PayloadTooLarge": error_response("payload_too_large: the body is over the limit (1 MiB)"),
    "UnsupportedMediaType": error_response(
        "unsupported_media_type: a non-empty body without Content-Type: application/json"
    ),
    "IdempotencyMismatch": error_response(
        "idempotency_mismatch: this Idempotency-Key was used with a different body"
    ),
    "RateLimited": error_response(
        "rate_limited: over the integration's per-minute limit",
        {"Retry-After": {"schema": {"type": "string"}}},
    ),
    "Unavailable": error_response("unavailable: storage not writable, or shutting down"),
}


def errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        413: "PayloadTooLarge",
        415: "UnsupportedMediaType",
        422: "IdempotencyMismatch",
        429: "RateLimited",
    }
    return {str(s): {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


def request_body(schema_name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": json_body(ref(schema_name))}


NO_CONTENT = {"204": {"description": "deleted"}}
# Answers every operation can give: a missing or wrong token, a token without the scope, and
# storage that is closed or shutting down.
COMMON_RESPONSES: dict[str, Any] = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token (AGENT_RELAY_TOKEN) or an integration token",
    },
    "relayToken": {"type": "apiKey", "in": "header", "name": "X-Agent-Relay-Token"},
}

COMPONENTS: dict[str, Any] = {
    "schemas": SCHEMAS,
    "parameters": PARAMETERS,
    "responses": RESPONSES,
    "securitySchemes": SECURITY_SCHEMES,
}

DESCRIPTION = """\
The Agent Relay HTTP API (see docs/api.md). JSON in and out, camelCase, UTC timestamps.

Authentication: when the relay has an admin token (AGENT_RELAY_TOKEN), every /api request needs
`Authorization: Bearer <token>` or `X-Agent-Relay-Token: <token>`; integration tokens act as
scoped tokens (each operation names its scope in `x-scope`). A relay without an admin token
serves only on loopback and accepts requests without a token.
"""
