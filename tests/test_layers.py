"""The import arrows of docs/ARCHITECTURE.md ("Layers"): read from the source with ast, so
that a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What the bridge may use of ``server``: leaf modules, which import nothing of ``server``
#: but each other (the settings check keys with ``server.keys``).
BRIDGE_MAY_USE = {"server.config", "server.keys", "server.tally", "server.rpc.inprocess"}
#: Libraries of the edges, which the engine must not know.
EDGE_LIBRARIES = {
    "grpc", "grpc_health", "grpc_reflection", "google", "tidings", "quart", "quart_schema",
    "hypercorn", "wsproto", "orjson", "sqlalchemy", "sqlmodel", "aiosqlite", "asyncpg",
    "redis", "prometheus_client", "bridge", "tidingsd",
}  # fmt: skip


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports are not used here)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".", 1)[0]


def test_the_walk_sees_lazy_imports() -> None:
    assert "bridge.runner" in imports(ROOT / "tidingsd" / "runtime.py")


@pytest.mark.parametrize("path", sources("server"), ids=lambda p: str(p.relative_to(ROOT)))
def test_server_never_imports_the_bridge_or_the_process(path: Path) -> None:
    wrong = {m for m in imports(path) if top(m) in {"bridge", "tidingsd"}}
    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_bridge_uses_only_leaf_modules_of_the_server() -> None:
    wrong = set()
    for path in sources("bridge"):
        name = str(path.relative_to(ROOT))
        for module in imports(path):
            if top(module) == "tidingsd":
                wrong.add((name, module))
            if top(module) == "server" and module not in BRIDGE_MAY_USE:
                wrong.add((name, module))
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("module", sorted(BRIDGE_MAY_USE))
def test_what_the_bridge_uses_is_a_leaf(module: str) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    reached = {m for m in imports(path) if top(m) in {"server", "bridge", "tidingsd"}}
    assert reached <= BRIDGE_MAY_USE, sorted(reached - BRIDGE_MAY_USE)


@pytest.mark.parametrize("path", sources("server/engine"), ids=lambda p: p.name)
def test_the_engine_knows_no_transport_store_or_broker(path: Path) -> None:
    wrong = {
        m
        for m in imports(path)
        if top(m) in EDGE_LIBRARIES or (top(m) == "server" and not m.startswith("server.engine"))
    }
    assert not wrong, f"{path.name} imports {sorted(wrong)}"
