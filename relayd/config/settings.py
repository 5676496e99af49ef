"""One frozen Settings object for relayd and relayctl: defaults → TOML → environment → flags.

Every setting is declared once in ``FIELDS`` with its TOML key, its environment variable and its
parser; an invalid value anywhere raises ``SettingsError`` naming the setting and its source.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import os
import stat
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relayd.config import paths

SCOPES = frozenset(
    {
        "stats:read",
        "health:read",
        "events:read",
        "channels:read",
        "agents:read",
        "agents:write",
        "messages:read",
        "messages:write",
        "tasks:read",
        "tasks:write",
        "pairs:read",
        "pairs:write",
        "system:write",
        "tasks:create",
        "events:create",
        "*",
    }
)


CONTROL_TRANSPORTS = ("unix", "tcp")


def default_control_transport() -> str:
    """asyncio has no Unix sockets on Windows: there the control plane is loopback TCP."""
    return "tcp" if sys.platform == "win32" else "unix"


class SettingsError(ValueError):
    """A setting has an invalid value; the message names it and says where it came from."""


@dataclass(frozen=True)
class Integration:
    name: str
    token: str
    scopes: frozenset[str]
    targets: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    callback_url: str | None = None
    callback_secret: str | None = None


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4850
    db_path: Path = field(default_factory=paths.default_db_path)
    db_url: str | None = None  # postgresql://… puts the relay on PostgreSQL instead of db_path
    socket_path: Path = field(default_factory=paths.default_socket_path)
    control_transport: str = field(default_factory=default_control_transport)
    control_port: int = 0
    config_path: Path | None = None
    token: str | None = None
    allow_unauth: bool = False
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    integrations: tuple[Integration, ...] = ()
    integration_rate_limit_per_minute: int = 120
    stale_ttl_ms: int = 90_000
    offline_prune_ms: int = 7 * 24 * 3600 * 1000
    reap_interval_ms: int = 10_000
    retention_days: int = 30
    claim_lease_ms: int = 3600 * 1000
    pending_pair_ttl_ms: int = 10 * 60 * 1000
    callback_max_attempts: int = 12
    max_body_bytes: int = 1024 * 1024
    max_message_bytes: int = 64 * 1024
    max_header_bytes: int = 128 * 1024
    header_timeout_seconds: float = 10.0
    stall_timeout_seconds: float = 30.0
    sse_keepalive_seconds: float = 15.0
    sse_queue_size: int = 1000
    event_retention: int = 100_000
    log_level: str = "info"
    log_file: Path | None = None
    telegram_bot_token: str | None = None
    telegram_chat_ids: tuple[int, ...] = ()
    telegram_api_url: str = "https://api.telegram.org"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def integration_named(self, name: str) -> Integration | None:
        return next((i for i in self.integrations if i.name == name), None)

    def integration_for_token(self, token: str) -> Integration | None:
        for integration in self.integrations:
            if same_secret(integration.token, token):
                return integration
        return None


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison of tokens; surrogateescape, since header bytes and the
    environment may hold bytes that are not UTF-8."""
    return hmac.compare_digest(
        a.encode(errors="surrogateescape"), b.encode(errors="surrogateescape")
    )


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- parsers


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("must be a whole number")
        try:
            number = int(value)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if maximum is not None and not minimum <= number <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        return number

    return parse


def _float(minimum: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        return number

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false (1/0)")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _optional_str(value: Any) -> str | None:
    text = _str(value)
    return text or None


def _path(value: Any) -> Path:
    return Path(os.path.expanduser(_str(value)))


def _optional_path(value: Any) -> Path | None:
    return _path(value) if _str(value).strip() else None


def _host(value: Any) -> str:
    text = _str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _origins(value: Any) -> tuple[str, ...]:
    items = [_str(v) for v in value] if isinstance(value, list) else _str(value).split(",")
    return tuple(item.strip().rstrip("/") for item in items if item.strip())


def _hosts(value: Any) -> tuple[str, ...]:
    """Host names a browser may use for a token-less relay, `name` or `name:port`."""
    items = [_str(v) for v in value] if isinstance(value, list) else _str(value).split(",")
    hosts = tuple(item.strip().lower() for item in items if item.strip())
    for host in hosts:
        if any(c.isspace() or c in "/@?#" for c in host):
            raise ValueError(f"'{host}' is not a host name (name or name:port)")
    return hosts


def _log_level(value: Any) -> str:
    text = _str(value).lower()
    if text not in ("debug", "info", "warning", "error"):
        raise ValueError("must be one of debug, info, warning, error")
    return text


def _control_transport(value: Any) -> str:
    text = _str(value).strip().lower()
    if text not in CONTROL_TRANSPORTS:
        raise ValueError("must be unix or tcp")
    return text


def _chat_ids(value: Any) -> tuple[int, ...]:
    items = list(value) if isinstance(value, list) else _str(value).split(",")
    ids: list[int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            ids.append(int(text))
        except ValueError:
            raise ValueError(f"must be a comma list of numeric chat ids, not '{text}'") from None
    return tuple(ids)


def _http_url(value: Any) -> str:
    text = _str(value).strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return text


def _integrations(value: Any) -> tuple[Integration, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON ({exc.msg})") from None
    if not isinstance(value, list):
        raise ValueError("must be a JSON list of {name, token, scopes, ...}")
    result = [_integration(item, i) for i, item in enumerate(value)]
    names = [i.name for i in result]
    if len(set(names)) != len(names):
        raise ValueError("has two integrations with the same name")
    return tuple(result)


def _integration(item: Any, index: int) -> Integration:
    where = f"entry {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object")
    name, token = item.get("name"), item.get("token")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} needs a non-empty string 'name'")
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"integration '{name}' needs a non-empty string 'token'")
    scopes = item.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError(f"integration '{name}': 'scopes' must be a list of strings")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ValueError(f"integration '{name}': unknown scope(s) {', '.join(unknown)}")
    return Integration(
        name=name,
        token=token,
        scopes=frozenset(scopes),
        targets=_string_list(item.get("targets"), name, "targets"),
        channels=_string_list(item.get("channels"), name, "channels"),
        callback_url=_optional_field(item, "callbackUrl", name),
        callback_secret=_optional_field(item, "callbackSecret", name),
    )


def _string_list(value: Any, name: str, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"integration '{name}': '{key}' must be a list of strings")
    return tuple(value)


def _optional_field(item: dict[str, Any], key: str, name: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"integration '{name}': '{key}' must be a string")
    if key == "callbackUrl" and not value.startswith(("http://", "https://")):
        raise ValueError(f"integration '{name}': 'callbackUrl' must be an http(s) URL")
    return value


DB_URL_SCHEMES = ("postgresql://", "postgres://")


def _db_url(value: Any) -> str | None:
    """A PostgreSQL connection URL; empty means SQLite (db_path)."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value.strip():
        return None
    if not value.startswith(DB_URL_SCHEMES):
        raise ValueError("must start with postgresql:// or postgres://")
    return value


@dataclass(frozen=True)
class FieldSpec:
    name: str
    parse: Callable[[Any], Any]
    env: str | None


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("host", _host, "HOST"),
    FieldSpec("port", _int(0, 65535), "PORT"),
    FieldSpec("db_path", _path, "DB_PATH"),
    FieldSpec("db_url", _db_url, "DB_URL"),
    FieldSpec("socket_path", _path, "AGENT_RELAY_SOCKET"),
    FieldSpec("control_transport", _control_transport, "AGENT_RELAY_CONTROL_TRANSPORT"),
    FieldSpec("control_port", _int(0, 65535), "AGENT_RELAY_CONTROL_PORT"),
    FieldSpec("token", _optional_str, "AGENT_RELAY_TOKEN"),
    FieldSpec("allow_unauth", _bool, "AGENT_RELAY_ALLOW_UNAUTH"),
    FieldSpec("cors_origins", _origins, "AGENT_RELAY_CORS_ORIGINS"),
    FieldSpec("allowed_hosts", _hosts, "AGENT_RELAY_ALLOWED_HOSTS"),
    FieldSpec("integrations", _integrations, "AGENT_RELAY_INTEGRATIONS"),
    FieldSpec(
        "integration_rate_limit_per_minute",
        _int(1),
        "AGENT_RELAY_INTEGRATION_RATE_LIMIT_PER_MINUTE",
    ),
    # Small floors: sub-second timings are for tests and demos, and must not stop relayd.
    FieldSpec("stale_ttl_ms", _int(100), "STALE_TTL_MS"),
    FieldSpec("offline_prune_ms", _int(0), "OFFLINE_PRUNE_MS"),
    FieldSpec("reap_interval_ms", _int(10), "REAP_INTERVAL_MS"),
    FieldSpec("retention_days", _int(1), "RETENTION_DAYS"),
    FieldSpec("claim_lease_ms", _int(100), "AGENT_RELAY_CLAIM_LEASE_MS"),
    FieldSpec("pending_pair_ttl_ms", _int(100), "AGENT_RELAY_PENDING_PAIR_TTL_MS"),
    FieldSpec("callback_max_attempts", _int(1, 100), "AGENT_RELAY_CALLBACK_MAX_ATTEMPTS"),
    FieldSpec("max_body_bytes", _int(1024), "AGENT_RELAY_MAX_BODY_BYTES"),
    FieldSpec("max_message_bytes", _int(1), "AGENT_RELAY_MAX_MESSAGE_BYTES"),
    FieldSpec("max_header_bytes", _int(8192), "AGENT_RELAY_MAX_HEADER_BYTES"),
    FieldSpec("header_timeout_seconds", _float(0.1), "AGENT_RELAY_HEADER_TIMEOUT_SECONDS"),
    FieldSpec("stall_timeout_seconds", _float(0.1), "AGENT_RELAY_STALL_TIMEOUT_SECONDS"),
    FieldSpec("sse_keepalive_seconds", _float(0.05), "AGENT_RELAY_SSE_KEEPALIVE_SECONDS"),
    FieldSpec("sse_queue_size", _int(10), "AGENT_RELAY_SSE_QUEUE_SIZE"),
    FieldSpec("event_retention", _int(100), "AGENT_RELAY_EVENT_RETENTION"),
    FieldSpec("log_level", _log_level, "AGENT_RELAY_LOG_LEVEL"),
    FieldSpec("log_file", _optional_path, "AGENT_RELAY_LOG_FILE"),
    FieldSpec("telegram_bot_token", _optional_str, "AGENT_RELAY_TELEGRAM_BOT_TOKEN"),
    FieldSpec("telegram_chat_ids", _chat_ids, "AGENT_RELAY_TELEGRAM_CHAT_IDS"),
    FieldSpec("telegram_api_url", _http_url, "AGENT_RELAY_TELEGRAM_API_URL"),
)
FIELD_NAMES = frozenset(spec.name for spec in FIELDS)


def config_file_from(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if env.get("AGENT_RELAY_CONFIG"):
        return Path(env["AGENT_RELAY_CONFIG"]).expanduser()
    return paths.default_config_file()


def load_toml_file(
    path: Path, *, required: bool, what: str, error: type[Exception]
) -> dict[str, Any]:
    """A TOML file as a dict ({} when absent and optional); `error` says what is wrong."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        if required:
            raise error(f"{what} {path} does not exist") from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror}") from None


def read_toml(path: Path, required: bool) -> dict[str, Any]:
    data = load_toml_file(path, required=required, what="config file", error=SettingsError)
    unknown = sorted(set(data) - FIELD_NAMES - {"config_path"})
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load(
    *,
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults, the TOML file, the environment and flag overrides."""
    env = os.environ if env is None else env
    path = config_file_from(config, env)
    explicit = bool(config or env.get("AGENT_RELAY_CONFIG"))
    values: dict[str, Any] = {"config_path": path}
    for key, raw in read_toml(path, required=explicit).items():
        values[key] = _parse(key, raw, f"{path}")
    for spec in FIELDS:
        if spec.env and spec.env in env:
            values[spec.name] = _parse(spec.name, env[spec.env], f"environment {spec.env}")
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _parse(key, raw, f"--{key.replace('_', '-')}")
    return Settings(**values)


def _parse(name: str, raw: Any, source: str) -> Any:
    spec = next((s for s in FIELDS if s.name == name), None)
    if spec is None:
        raise SettingsError(f"unknown setting '{name}' ({source})")
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"invalid {name} ({source}): {exc}") from None


def exposed_token_warning(path: Path | None) -> str | None:
    """One line when the config file holds a token and group or others may read it."""
    if path is None or sys.platform == "win32":  # Windows: ACLs, not mode bits
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o044:
        return None
    try:
        data = read_toml(path, required=False)
    except SettingsError:
        return None
    if not data.get("token") and not data.get("integrations"):
        return None
    return (f"config file {path} holds a token and is readable by group or others (mode "
            f"{mode:o}); make it private: chmod 600 {path}")


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


def check_bind_safety(settings: Settings) -> None:
    """The daemon refuses to serve a non-loopback address without a token."""
    if not settings.is_loopback and not settings.token and not settings.allow_unauth:
        raise SettingsError(
            f"refusing to listen on {settings.host} without a token: set AGENT_RELAY_TOKEN "
            "(or run `relayctl setup`), or set AGENT_RELAY_ALLOW_UNAUTH=1 to accept the risk"
        )
