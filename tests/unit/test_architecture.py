"""The layer rules, read from the imports (ast) of relayd/ and relayctl/.

- no import cycle between modules (every import counts: top level, in a function, or under
  TYPE_CHECKING), except the edges listed in ALLOWED_CYCLE_EDGES with their reason;
- nothing in relayd/domain, relayd/storage, relayd/errors.py, relayd/bus.py imports aiohttp;
- sqlite3 / aiosqlite / asyncpg only inside relayd/storage (exceptions in ALLOWED_SQL);
- no relayctl module imports the entry point relayctl/main.py (they import relayctl/cli.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("relayd", "relayctl")
SQL_DRIVERS = {"sqlite3", "aiosqlite", "asyncpg"}
NO_AIOHTTP = ("relayd.domain", "relayd.storage", "relayd.errors", "relayd.bus")

# (importer, imported): why the edge is still there. Remove an entry when its edge goes.
ALLOWED_CYCLE_EDGES = {
    ("relayd.storage.sql_agents", "relayd.storage.sql_messages"):
        "offer_open_claims delivers messages; cross-table rule to move into one module above "
        "the sql_* modules (storage is being edited by the pg and perf work this session)",
    ("relayd.storage.sql_messages", "relayd.storage.sql_tasks"):
        "claim() advances the task; same cross-table rule move",
    ("relayd.storage.sql_callbacks", "relayd.storage.sql_tasks"):
        "a dead callback records a task event; same cross-table rule move",
    ("relayd.storage.sql_fanout", "relayd.storage.sql_agents"):
        "fan-out reads agents, agents fan out (landed by the perf work this session); to go "
        "with the same move of the cross-table rules",
    ("relayd.storage.sqlite_tx", "relayd.storage.sql_fanout"):
        "Tx hands events to the fan-out (perf work this session); same move",
    ("relayd.channels", "relayd.channels.telegram"):
        "factories() builds the Telegram channel; the Channel protocol should move to its own "
        "module (channels/ is being edited by the humans work this session)",
    ("relayd.channels", "relayd.daemon.context"):
        "TYPE_CHECKING only: build_channels(ctx); Context should get typed channel fields",
}
# module: why it names a SQL driver outside relayd/storage
ALLOWED_SQL = {
    "relayd.daemon.relay": "catches sqlite3.Error from store.open(); the store should raise its "
    "own error (lifecycle is being edited by the pg work this session)",
}


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
