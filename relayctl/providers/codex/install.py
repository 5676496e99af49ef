"""`relayctl provider install codex`: put the Agent Relay plugin into CODEX_HOME.

What `codex plugin marketplace add` + `codex plugin add` would do, without needing the codex
binary: the shipped marketplace is copied to ``$CODEX_HOME/agent-relay/marketplace``, its plugin
to Codex's plugin cache (``plugins/cache/agent-relay/agent-relay/<version>``), and config.toml
gains two tables — ``[marketplaces.agent-relay]`` and ``[plugins."agent-relay@agent-relay"]``.
The rest of config.toml is kept as written (comments included): only those two tables are
replaced or appended, and the result is checked to parse with every other setting unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from relayd import __version__

MARKETPLACE = "agent-relay"
PLUGIN = "agent-relay"
PLUGIN_KEY = f"{PLUGIN}@{MARKETPLACE}"
MARKETPLACE_HEADER = f"marketplaces.{MARKETPLACE}"
PLUGIN_HEADER = f'plugins."{PLUGIN_KEY}"'


class InstallError(Exception):
    """config.toml cannot be read or merged; the message says why."""


def codex_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    override = env.get("CODEX_HOME", "").strip()
    return Path(override).expanduser() if override else Path.home() / ".codex"


def bundle_dir() -> Path:
    return Path(str(resources.files("relayctl.providers.codex") / "bundle"))


def marketplace_dir(home: Path) -> Path:
    return home / "agent-relay" / "marketplace"


def plugin_cache_dir(home: Path, version: str = __version__) -> Path:
    return home / "plugins" / "cache" / MARKETPLACE / PLUGIN / version


def is_installed(home: Path) -> bool:
    config = read_config(home / "config.toml")[1]
    return PLUGIN_KEY in (config.get("plugins") or {}) or marketplace_dir(home).is_dir()


def installed_version(home: Path) -> str | None:
    """The version of our plugin in Codex's plugin cache, when it is installed and enabled."""
    try:
        plugins = read_config(home / "config.toml")[1].get("plugins") or {}
    except InstallError:
        return None
    entry = plugins.get(PLUGIN_KEY) if isinstance(plugins, dict) else None
    if not isinstance(entry, dict) or entry.get("enabled") is not True:
        return None
    cache = plugin_cache_dir(home).parent
    versions = [p.name for p in cache.glob("*") if (p / ".codex-plugin" / "plugin.json").is_file()]
    if __version__ in versions:
        return __version__
    return sorted(versions)[-1] if versions else None  # install keeps only one


def status(home: Path | None = None) -> dict[str, Any]:
    home = codex_home() if home is None else home
    version = installed_version(home)
    return {"installed": version is not None, "pluginVersion": version,
            "upToDate": version == __version__, "codexHome": str(home)}


# ----------------------------------------------------------------------------- config.toml


def read_config(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "", {}
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InstallError(f"{path} is not valid TOML ({exc}); fix it and run this again"
                           ) from None


def _table_text(header: str, values: Mapping[str, Any]) -> str:
    return f"[{header}]\n" + tomli_w.dumps(dict(values))


def _replace_table(text: str, header: str, values: Mapping[str, Any]) -> str:
    """text with the table `[header]` (written exactly so) replaced, else appended."""
    lines = text.splitlines(keepends=True)
    pattern = re.compile(r"^\s*\[\s*" + re.escape(header) + r"\s*\]\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if pattern.match(line.rstrip("\r\n"))),
                 None)
    block = _table_text(header, values)
    if start is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n")
                                                            else "\n\n")
        return text + sep + block
    end = start + 1
    while end < len(lines) and not re.match(r"^\s*\[", lines[end]):
        end += 1
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + block + ("\n" + tail if tail else "")


def merged_config(text: str, tables: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """text with each (section, key) table set to its values, all other settings kept."""
    original = tomllib.loads(text) if text.strip() else {}
    expected = json.loads(json.dumps(original))
    for (section, key), values in tables.items():
        expected.setdefault(section, {})[key] = dict(values)
    headers = {("marketplaces", MARKETPLACE): MARKETPLACE_HEADER,
               ("plugins", PLUGIN_KEY): PLUGIN_HEADER}
    result = text
    for where, values in tables.items():
        result = _replace_table(result, headers[where], values)
    try:
        if tomllib.loads(result) == expected:
            return result
    except tomllib.TOMLDecodeError:
        pass
    # The tables were written in a form the text edit cannot see (dotted keys, inline
    # tables): rewrite the whole file from its parsed settings, which keeps every value.
    return tomli_w.dumps(expected)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- files


def _copy_tree(source: Path, target: Path) -> None:
    """Replace target with a copy of source (via a sibling, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging / "tree")
        if target.exists():
            shutil.rmtree(target)
        (staging / "tree").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stamp_version(plugin_root: Path) -> None:
    manifest = plugin_root / ".codex-plugin" / "plugin.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["version"] = __version__
    manifest.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def install(home: Path | None = None) -> dict[str, Any]:
    """Install (or bring up to date) the plugin in CODEX_HOME; what was written."""
    home = codex_home() if home is None else home
    config_path = home / "config.toml"
    text, _ = read_config(config_path)
    market = marketplace_dir(home)
    _copy_tree(bundle_dir(), market)
    _stamp_version(market / "plugins" / PLUGIN)
    cache = plugin_cache_dir(home)
    _copy_tree(market / "plugins" / PLUGIN, cache)
    for old in cache.parent.iterdir():  # earlier versions of our plugin only
        if old.is_dir() and old.name != cache.name and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    merged = merged_config(text, {
        ("marketplaces", MARKETPLACE): {"source_type": "local", "source": str(market)},
        ("plugins", PLUGIN_KEY): {"enabled": True},
    })
    changed = merged != text
    if changed:
        write_atomically(config_path, merged)
    return {"codexHome": str(home), "marketplace": str(market), "plugin": str(cache),
            "config": str(config_path), "configChanged": changed, "version": __version__}
