"""The provider environment: who this agent is and how it presents itself to the relay.

A provider (a coding-agent session, a hook, a script) describes itself with environment
variables, optionally starting from a named profile in a TOML file:

    AGENT_RELAY_PROFILE / AGENT_RELAY_PROFILES_FILE   pick a profile (its values are defaults)
    AGENT_RELAY_LABEL AGENT_RELAY_TAGS AGENT_RELAY_CAPS AGENT_RELAY_CHANNELS AGENT_RELAY_APPROVAL
                                                      override the profile, one field each
    AGENT_RELAY_AGENT_ID                              an explicit agent id
    AGENT_RELAY_SESSION                               the session the deterministic id hashes

Without an explicit id the agent id is deterministic: ``{hostname}-{project}-{session-hash}``,
so the same session in the same project always comes back as the same agent.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from relayd.config import paths
from relayd.config.settings import load_toml_file

APPROVALS = ("open", "guarded", "read-only")
PROFILES_FILENAME = "profiles.toml"
PROFILE_KEYS = frozenset({"label", "tags", "caps", "capabilities", "channels", "approval"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


class ProviderEnvError(ValueError):
    """The provider environment or profiles file is invalid; the message says where."""


@dataclass(frozen=True)
class Profile:
    """How an agent presents itself; None or empty means "let the relay use its default"."""

    label: str | None = None
    tags: tuple[str, ...] | None = None
    capabilities: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    approval: str | None = None


@dataclass(frozen=True)
class ProviderIdentity:
    agent_id: str
    machine: str
    project: str
    profile: Profile = field(default_factory=Profile)
    provider: str | None = None

    def registration(self) -> dict[str, Any]:
        """The POST /api/agents body for this identity (only the fields that are set)."""
        body: dict[str, Any] = {"id": self.agent_id, "machine": self.machine,
                                "project": self.project}
        if self.provider:
            body["provider"] = self.provider
        optional = {
            "label": self.profile.label,
            "tags": _list(self.profile.tags),
            "capabilities": _list(self.profile.capabilities),
            "channels": _list(self.profile.channels),
            "approval": self.profile.approval,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


# ----------------------------------------------------------------------------- ids


def safe_part(text: str, fallback: str, max_len: int) -> str:
    """A piece of an agent id: characters the relay accepts, no leading/trailing dashes."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")
    return cleaned[:max_len].rstrip("-.") or fallback


def short_hostname() -> str:
    return safe_part(socket.gethostname().split(".")[0], "host", 40)


def project_root(cwd: Path) -> Path:
    """The git work tree containing cwd, else cwd itself."""
    for candidate in (cwd, *cwd.parents):
        if (candidate / ".git").exists():
            return candidate
    return cwd


def project_name(cwd: Path) -> str:
    return safe_part(project_root(cwd).name, "root", 64)


def session_identifier(env: Mapping[str, str], cwd: Path) -> str:
    """AGENT_RELAY_SESSION when the provider gives one; else the user and the project folder,
    so every shell and script of one user in one project acts as the same agent (an id that
    changed with each shell could be sent from but never answered)."""
    explicit = env.get("AGENT_RELAY_SESSION", "").strip()
    return explicit or f"{_user()}:{project_root(cwd)}"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "user"


def session_hash(session: str) -> str:
    return hashlib.sha256(session.encode("utf-8")).hexdigest()[:8]


def provider_agent_id(hostname: str, project: str, session: str) -> str:
    return f"{hostname}-{project}-{session_hash(session)}"


def default_agent_id(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """AGENT_RELAY_AGENT_ID, else the deterministic provider id for this session."""
    env = os.environ if env is None else env
    explicit = env.get("AGENT_RELAY_AGENT_ID", "").strip()
    if explicit:
        return explicit
    cwd = Path.cwd() if cwd is None else cwd
    return provider_agent_id(short_hostname(), project_name(cwd),
                             session_identifier(env, cwd))


# ----------------------------------------------------------------------------- profiles


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def profiles_file(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The profiles file and whether it was named explicitly (then it must exist)."""
    named = env.get("AGENT_RELAY_PROFILES_FILE", "").strip()
    if named:
        return Path(named).expanduser(), True
    return paths.config_dir() / PROFILES_FILENAME, False


def read_profiles(path: Path, required: bool) -> dict[str, Profile]:
    data = load_toml_file(path, required=required, what="profiles file", error=ProviderEnvError)
    tables = data.get("profiles", data)
    if not isinstance(tables, dict):
        raise ProviderEnvError(f"profiles file {path}: 'profiles' must be a table")
    return {name: _profile(name, table, path) for name, table in tables.items()}


def _profile(name: str, table: Any, path: Path) -> Profile:
    where = f"profiles file {path}, profile '{name}'"
    if not isinstance(table, dict):
        raise ProviderEnvError(f"{where}: must be a table")
    unknown = sorted(set(table) - PROFILE_KEYS)
    if unknown:
        raise ProviderEnvError(f"{where}: unknown key(s) {', '.join(unknown)}")
    label = table.get("label")
    if label is not None and not isinstance(label, str):
        raise ProviderEnvError(f"{where}: 'label' must be a string")
    caps = table.get("caps", table.get("capabilities"))
    return Profile(
        label=label or None,
        tags=_profile_list(table.get("tags"), "tags", where),
        capabilities=_profile_list(caps, "caps", where),
        channels=_profile_list(table.get("channels"), "channels", where),
        approval=_approval(table.get("approval"), where),
    )


def _profile_list(value: Any, key: str, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return comma_list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProviderEnvError(f"{where}: '{key}' must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _approval(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if value not in APPROVALS:
        raise ProviderEnvError(f"{where}: approval must be one of {', '.join(APPROVALS)}")
    return str(value)


def chosen_profile(env: Mapping[str, str]) -> Profile:
    """AGENT_RELAY_PROFILE from the profiles file; a profile named "default" when none is named."""
    name = env.get("AGENT_RELAY_PROFILE", "").strip()
    path, explicit = profiles_file(env)
    profiles = read_profiles(path, required=explicit or bool(name))
    if not name:
        return profiles.get("default", Profile())
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ProviderEnvError(
            f"AGENT_RELAY_PROFILE={name}: no such profile in {path} (profiles: {known})"
        )
    return profiles[name]


def profile_from_env(env: Mapping[str, str]) -> Profile:
    """The chosen profile with each AGENT_RELAY_* variable that is set overriding its field."""
    profile = chosen_profile(env)
    changes: dict[str, Any] = {}
    if env.get("AGENT_RELAY_LABEL", "").strip():
        changes["label"] = env["AGENT_RELAY_LABEL"].strip()
    for var, name in (("AGENT_RELAY_TAGS", "tags"), ("AGENT_RELAY_CAPS", "capabilities"),
                      ("AGENT_RELAY_CHANNELS", "channels")):
        if env.get(var, "").strip():
            changes[name] = comma_list(env[var])
    if env.get("AGENT_RELAY_APPROVAL", "").strip():
        changes["approval"] = _approval(env["AGENT_RELAY_APPROVAL"].strip(),
                                        "AGENT_RELAY_APPROVAL")
    return replace(profile, **changes)


def identity_from_env(env: Mapping[str, str] | None = None,
                      cwd: Path | None = None) -> ProviderIdentity:
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    provider = env.get("AGENT_RELAY_PROVIDER", "").strip() or None
    return ProviderIdentity(
        agent_id=default_agent_id(env, cwd),
        machine=short_hostname(),
        project=project_name(cwd),
        profile=profile_from_env(env),
        provider=provider,
    )
