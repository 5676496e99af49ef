"""The layer rules, read from the imports (ast) of relayd/ and relayctl/.

- no import cycle between modules (every import counts: top level, in a function, or under
  TYPE_CHECKING), except the edges listed in ALLOWED_CYCLE_EDGES with their reason;
- each module imports only its own layer and the layers LAYERS lets it (docs/architecture.md
  draws them): the assembly (relayd/main.py, relayd/daemon/relay.py) sees everything; the
  transports (relayd/http, relayd/mcp, relayd/control) the services (relayd/daemon,
  relayd/channels) and below; storage only the domain, config and the foundation;
- the control plane imports from relayd/http only the server and error plumbing it shares;
- nothing in relayd/domain, relayd/storage, relayd/errors.py, relayd/bus.py imports aiohttp;
- sqlite3 / aiosqlite / asyncpg only inside relayd/storage (exceptions in ALLOWED_SQL);
- no relayctl module imports the entry point relayctl/main.py (they import relayctl/cli.py);
- docs/architecture.md names every module, and names no module that does not exist.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("relayd", "relayctl")
SQL_DRIVERS = {"sqlite3", "aiosqlite", "asyncpg"}
NO_AIOHTTP = ("relayd.domain", "relayd.storage", "relayd.errors", "relayd.bus")
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"

# layer: the packages/modules in it (longest prefix wins)
LAYER_OF = {
    "relayd": "foundation",  # __version__
    "relayd.errors": "foundation",
    "relayd.jsoncodec": "foundation",
    "relayd.private_files": "foundation",
    "relayd.domain": "domain",
    "relayd.config": "config",
    "relayd.bus": "events",
    "relayd.metrics": "events",
    "relayd.storage": "storage",
    "relayd.channels": "services",
    "relayd.daemon": "services",
    "relayd.http": "transports",
    "relayd.mcp": "transports",
    "relayd.control": "transports",
    "relayd.daemon.relay": "assembly",
    "relayd.main": "assembly",
    "relayctl": "cli",
}
BELOW_STORAGE = {"domain", "config", "foundation"}
# layer: the other layers its modules may import
LAYERS = {
    "foundation": set(),
    "domain": {"foundation"},
    "config": {"foundation"},
    "events": {"domain", "foundation"},
    "storage": BELOW_STORAGE,
    "services": {"storage", "events", *BELOW_STORAGE},
    "transports": {"services", "storage", "events", *BELOW_STORAGE},
    "assembly": {"transports", "services", "storage", "events", *BELOW_STORAGE},
    # relayctl reads relayd's settings and paths, and runs the MCP server relayd defines
    "cli": {"config", "foundation"},
}
# module prefix: the modules of another layer it may import anyway, and why
LAYER_EXCEPTIONS = {
    "relayctl.commands.mcp": {
        "relayd.mcp.specs": "the MCP tool list is shared with relayd's /mcp",
        "relayd.mcp.server": "`relayctl mcp` runs the same SDK server over stdio",
    },
}
# what the control plane may use of relayd/http: the aiohttp plumbing both servers share
CONTROL_MAY_IMPORT_FROM_HTTP = {"relayd.http.errors", "relayd.http.server", "relayd.http.parsing"}

# (importer, imported): why the edge is still there. Remove an entry when its edge goes.
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {}
# module: why it names a SQL driver outside relayd/storage
ALLOWED_SQL: dict[str, str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(internal modules, external top-level names) that the module imports."""
    internal: set[str] = set()
    external: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in subs if t in known] or [base]
        for target in targets:
            root = target.split(".")[0]
            if root not in PACKAGES:
                external.add(root)
                continue
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                internal.add(target)
    return internal, external


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    known = modules()
    edges, externals = {}, {}
    for name, path in known.items():
        edges[name], externals[name] = imports(name, path, known)
    return edges, externals


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    edges, _ = graph()
    pruned = {m: {t for t in ts if (m, t) not in ALLOWED_CYCLE_EDGES} for m, ts in edges.items()}
    cycle = find_cycle(pruned)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_allowed_cycle_edges_still_exist() -> None:
    edges, _ = graph()
    stale = [edge for edge in ALLOWED_CYCLE_EDGES if edge[1] not in edges.get(edge[0], set())]
    assert not stale, f"these edges are gone: remove them from ALLOWED_CYCLE_EDGES: {stale}"


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def in_layer(name: str, layers: tuple[str, ...]) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in layers)


def test_no_aiohttp_below_http() -> None:
    edges, externals = graph()
    offenders = []
    for name in edges:
        if not in_layer(name, NO_AIOHTTP):
            continue
        # what the module loads, transitively, through relayd's own imports
        seen, todo = {name}, [name]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        via = sorted(m for m in seen if "aiohttp" in externals[m])
        if via:
            offenders.append(f"{name} loads aiohttp through {via}")
    assert not offenders, "\n".join(offenders)


def test_storage_loads_without_aiohttp() -> None:
    code = (
        "import sys, relayd.storage.sqlite, relayd.domain.models, relayd.bus, relayd.errors;"
        "sys.exit('aiohttp' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_sql_drivers_only_in_storage() -> None:
    _, externals = graph()
    offenders = {
        name: sorted(externals[name] & SQL_DRIVERS)
        for name in externals
        if externals[name] & SQL_DRIVERS
        and not in_layer(name, ("relayd.storage",))
        and name not in ALLOWED_SQL
    }
    assert not offenders, f"SQL drivers imported outside relayd/storage: {offenders}"
    stale = [name for name in ALLOWED_SQL if not externals.get(name, set()) & SQL_DRIVERS]
    assert not stale, f"remove from ALLOWED_SQL: {stale}"


def test_relayctl_modules_do_not_import_main() -> None:
    edges, _ = graph()
    offenders = sorted(
        name for name, targets in edges.items()
        if name.startswith("relayctl.") and name != "relayctl.main" and "relayctl.main" in targets
    )
    assert not offenders, f"import relayctl.cli instead of relayctl.main: {offenders}"


def layer_of(name: str) -> str:
    prefixes = [p for p in LAYER_OF if name == p or name.startswith(p + ".")]
    assert prefixes, f"{name} is in no layer: add it to LAYER_OF"
    return LAYER_OF[max(prefixes, key=len)]


def layer_offences(edges: dict[str, set[str]]) -> list[str]:
    offences = []
    for name, targets in sorted(edges.items()):
        mine = layer_of(name)
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs == mine or theirs in LAYERS[mine]:
                continue
            excepted = {
                module
                for prefix, allowed in LAYER_EXCEPTIONS.items()
                if name == prefix or name.startswith(prefix + ".")
                for module in allowed
            }
            if target not in excepted:
                offences.append(f"{name} ({mine}) imports {target} ({theirs})")
    return offences


def test_every_module_has_a_layer() -> None:
    edges, _ = graph()
    for name in edges:
        assert layer_of(name) in LAYERS


def test_imports_follow_the_layers() -> None:
    edges, _ = graph()
    offences = layer_offences(edges)
    assert not offences, "imports against the layers (docs/architecture.md):\n" + "\n".join(
        offences
    )


def test_layer_check_catches_an_upward_import() -> None:
    fake = {
        "relayd.storage.sqlite": {"relayd.http.app"},
        "relayd.daemon.jobs": {"relayd.control.server"},
        "relayd.domain.models": {"relayd.config.settings"},
        "relayd.http.app": {"relayd.daemon.context", "relayd.storage.base"},
    }
    assert layer_offences(fake) == [
        "relayd.daemon.jobs (services) imports relayd.control.server (transports)",
        "relayd.domain.models (domain) imports relayd.config.settings (config)",
        "relayd.storage.sqlite (storage) imports relayd.http.app (transports)",
    ]


def test_nothing_below_the_transports_imports_http() -> None:
    edges, _ = graph()
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in edges.items()
        if layer_of(name) not in ("transports", "assembly")
        for target in targets
        if in_layer(target, ("relayd.http",))
    )
    assert not offenders, f"only the transports and the assembly import relayd.http: {offenders}"


def test_control_uses_only_the_shared_http_plumbing() -> None:
    edges, _ = graph()
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in edges.items()
        if in_layer(name, ("relayd.control",))
        for target in targets
        if in_layer(target, ("relayd.http",)) and target not in CONTROL_MAY_IMPORT_FROM_HTTP
    )
    assert not offenders, f"the control plane imports HTTP routes or the app: {offenders}"


def test_only_the_assembly_builds_the_relay() -> None:
    edges, _ = graph()
    importers = sorted(n for n, ts in edges.items() if "relayd.daemon.relay" in ts)
    assert importers == ["relayd.main"]


# ------------------------------------------------------------------ docs/architecture.md

# In the "## Modules" section: a `### relayd/http/` heading, then table rows whose first cell
# names files of that folder in backticks (`app.py`, `routes/agents.py`).
HEADING_RE = re.compile(r"^### `?([\w/]+/)`?", re.M)
ROW_RE = re.compile(r"^\| ([^|]+) \|", re.M)
NAME_RE = re.compile(r"`([\w/]+\.py)`")


def documented_modules() -> set[str]:
    text = ARCHITECTURE_DOC.read_text()
    section = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for block in re.split(r"(?=^### )", section, flags=re.M):
        heading = HEADING_RE.match(block)
        if heading is None:
            continue
        folder = heading.group(1)
        for row in ROW_RE.findall(block):
            named.update(folder + name for name in NAME_RE.findall(row))
    return named


def has_code(path: Path) -> bool:
    """A package __init__ with more than a docstring (and the future import) is a module."""
    body = ast.parse(path.read_text()).body
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
        for node in body
    )


def real_modules() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" or has_code(path)
    }


def test_architecture_doc_names_every_module() -> None:
    missing = sorted(real_modules() - documented_modules())
    assert not missing, f"describe these in docs/architecture.md (## Modules): {missing}"


def test_architecture_doc_names_no_missing_module() -> None:
    stale = sorted(documented_modules() - real_modules())
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"


def test_every_package_ships_in_the_wheel() -> None:
    """pyproject lists the packages by name: a new folder under relayd/ or relayctl/ must be
    added there, or the wheel would lack it while an editable install hides the gap."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ])
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }
    missing = sorted(packages - listed)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_layer_exceptions_are_still_needed() -> None:
    edges, _ = graph()
    stale = sorted(
        f"{prefix} -> {target}"
        for prefix, allowed in LAYER_EXCEPTIONS.items()
        for target in allowed
        if not any(
            target in targets
            for name, targets in edges.items()
            if name == prefix or name.startswith(prefix + ".")
        )
    )
    assert not stale, f"these imports are gone: remove them from LAYER_EXCEPTIONS: {stale}"
