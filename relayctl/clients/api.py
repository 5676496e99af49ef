"""A small synchronous client for the relay's HTTP API (the event stream: relayctl.clients.events).

The relay is found through AGENT_RELAY_URL (the server root, without /api) and
AGENT_RELAY_TOKEN, else through the local config file (the address relayd listens on and its
token). http.client is used directly so proxy variables never reroute loopback traffic.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import psutil

from relayctl import trust
from relayctl.cli import CliError, ExitCode
from relayd.config import paths
from relayd.config import settings as relay_settings

DEFAULT_TIMEOUT = 10.0
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")

Query = Mapping[str, str | int | bool | None]


@dataclass(frozen=True)
class RelayAddress:
    url: str  # the server root, no trailing slash, no /api
    token: str | None


def _root_url(host: str, port: int) -> str:
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # a broken [IPv6] host: ApiClient reports the URL as a usage error
        return False
    return relay_settings.is_loopback_host(host)


def _local_settings(config: str | None) -> relay_settings.Settings:
    try:
        settings = relay_settings.load(config=config)
    except relay_settings.SettingsError as exc:
        raise CliError(f"{exc}; or set AGENT_RELAY_URL") from None
    trust.warn_if_token_exposed(settings.config_path)
    return settings


def find_relay(config: str | None = None, env: Mapping[str, str] | None = None) -> RelayAddress:
    """AGENT_RELAY_URL/AGENT_RELAY_TOKEN, else the local config's address and token.

    With AGENT_RELAY_URL set and no AGENT_RELAY_TOKEN, the local config's token is used only
    when the URL is a loopback address, so it is never sent to another machine.
    """
    env = os.environ if env is None else env
    token = env.get("AGENT_RELAY_TOKEN", "").strip() or None
    url = env.get("AGENT_RELAY_URL", "").strip().rstrip("/")
    if url:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"AGENT_RELAY_URL={url} must start with http:// or https://",
                           ExitCode.USAGE)
        url = url.removesuffix("/api")
        if token is None and _is_loopback_url(url):
            token = _config_token(config)
        return RelayAddress(url, token)
    local = _local_settings(config)
    return RelayAddress(_local_url(local), token or local.token)


def _local_url(local: relay_settings.Settings) -> str:
    """Where the local relayd says it listens (listen.json, if that relayd lives), else the
    config's address; the record matters when relayd picked its port (PORT=0).

    The token follows this address, so a record is used only from a file the user owns in a
    directory the user owns (relayctl/trust.py), and never when it points the token at a
    non-loopback address that the config did not name."""
    for path in paths.listen_file_candidates(local.socket_path):
        record = trust.read_json(path)
        if not (record and _alive(record.get("pid")) and isinstance(record.get("port"), int)):
            continue
        host = str(record.get("host") or local.host)
        if (host not in WILDCARD_HOSTS and not relay_settings.is_loopback_host(host)
                and host != local.host):
            trust.warn_ignored(path, f"it names the non-loopback address {host}, which the "
                               "config does not; the token is not sent there")
            continue
        return _root_url(host, record["port"])
    return _root_url(local.host, local.port)


def _alive(pid: Any) -> bool:
    return isinstance(pid, int) and pid > 0 and psutil.pid_exists(pid)


def _config_token(config: str | None) -> str | None:
    try:
        return _local_settings(config).token
    except CliError:
        return None


# ----------------------------------------------------------------------------- requests


def is_refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno in (111, 61, 10061)
    )


def _header_safe(token: str) -> bool:
    return all(" " <= char <= "~" for char in token)  # printable ASCII only


class ApiClient:
    def __init__(self, address: RelayAddress, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            split = urlsplit(address.url)
            valid = split.scheme in ("http", "https") and bool(split.hostname) and (
                split.port is None or split.port > 0)
        except ValueError:  # a port that is not a number, an unclosed [IPv6] bracket
            valid = False
        if not valid:
            raise CliError(f"cannot use relay URL {address.url}: expected http(s)://HOST:PORT",
                           ExitCode.USAGE)
        if address.token is not None and not _header_safe(address.token):
            raise CliError("the token (AGENT_RELAY_TOKEN or the config's `token`) has characters"
                           " an HTTP header cannot carry", ExitCode.USAGE)
        self.address = address
        self.timeout = timeout
        self._split = split
        self._prefix = split.path.rstrip("/")

    @property
    def url(self) -> str:
        return self.address.url

    def not_running(self) -> CliError:
        return CliError(
            f"no relay answers at {self.url}; start it with `relayd` or `relayctl daemon start`",
            ExitCode.NOT_RUNNING,
        )

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        host, port = self._split.hostname or "", self._split.port
        if self._split.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "relayctl"}
        if self.address.token:
            headers["Authorization"] = f"Bearer {self.address.token}"
        headers.update(extra or {})
        return headers

    def path(self, path: str, query: Query | None = None) -> str:
        pairs = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        return f"{self._prefix}/api{path}" + (f"?{urlencode(pairs)}" if pairs else "")

    def request(self, method: str, path: str, *, query: Query | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Any:
        """Send one request; the decoded JSON answer (None for 204), or CliError."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        all_headers = self.headers(headers)
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        conn = self.connection(timeout or self.timeout)
        try:
            conn.request(method, self.path(path, query), body=payload, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
        except TimeoutError:
            raise CliError(f"the relay at {self.url} did not answer in time") from None
        except OSError as exc:
            raise self._connection_error(exc) from None
        except http.client.HTTPException as exc:
            raise CliError(f"the relay at {self.url} sent a broken answer ({exc!r})") from None
        finally:
            conn.close()
        return self._decode(response.status, raw, path)

    def get(self, path: str, query: Query | None = None, timeout: float | None = None) -> Any:
        return self.request("GET", path, query=query, timeout=timeout)

    def post(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        return self.request("POST", path, body=body, headers=headers)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body)

    def _connection_error(self, exc: OSError) -> CliError:
        if is_refused(exc):
            return self.not_running()
        reason = exc.strerror or str(exc) or type(exc).__name__
        return CliError(f"cannot reach the relay at {self.url}: {reason}")

    def _decode(self, status: int, raw: bytes, path: str) -> Any:
        if status == 204 or not raw:
            if status >= 400:
                raise CliError(f"the relay answered HTTP {status}")
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            raise CliError(f"the relay at {self.url} answered HTTP {status} "
                           "with something that is not JSON") from None
        if status == 404 and isinstance(data, dict) and data.get("error") == "no such route":
            raise CliError(f"the relay at {self.url} does not offer /api{path} "
                           "(an older relay? see `relayctl status`)")
        if status >= 400:
            raise api_error(status, data)
        return data


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RelayError(CliError):
    """The relay refused a request: its HTTP status and machine code, for callers that act on
    them (a heartbeat that gets 404 registers again)."""

    def __init__(self, message: str, status: int, code: str | None,
                 payload: dict[str, Any] | None = None) -> None:
        # A 400 invalid_request names an argument the user gave (a bad target, id or value):
        # a usage error, like the ones argparse catches.
        usage = status == 400 and code == "invalid_request"
        super().__init__(message, ExitCode.USAGE if usage else ExitCode.FAILURE)
        self.status = status
        self.error_code = code
        self.payload = payload or {}  # the relay's error JSON as it came: {error, code, ...}


def api_error(status: int, data: Any) -> RelayError:
    """The server's sentence (and code) as one line; 401 says which variable to check."""
    if not isinstance(data, dict) or "error" not in data:
        return RelayError(f"the relay answered HTTP {status}", status, None)
    code = data.get("code")
    message = f"{data['error']} ({code or f'HTTP {status}'})"
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates:
        message += "; candidates: " + ", ".join(str(c) for c in candidates)
    if status == 401:
        message += "; check AGENT_RELAY_TOKEN"
    return RelayError(message, status, code if isinstance(code, str) else None, data)
