"""The package's arrows, read from its imports: api -> domain -> cache -> store, each layer importing only
itself, the layers below it, the base modules (config, metrics) and ``shared``; no route module imports
another; SQLAlchemy only in the store; HTTP only in the api; nothing from ``trainer``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "selector_service"
LAYERS = ("store", "cache", "domain", "api")  # bottom to top
BASE = {"config", "metrics"}  # settings and counters: every layer may use them, they use no layer
ENTRY = {"__init__", "__main__", "server"}  # what builds and runs the app: above every layer


def imported(path: Path) -> set[str]:
    """Every module name ``path`` imports (``from a.b import c`` gives a.b and a.b.c)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def modules() -> dict[tuple[str, ...], set[str]]:
    """Imports of every module, keyed by its path parts inside the package (``("api", "routes", "pools")``)."""
    return {p.relative_to(PACKAGE).with_suffix("").parts: imported(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer_or_is_base_or_entry() -> None:
    for parts in modules():
        assert parts[0] in LAYERS or (len(parts) == 1 and parts[0] in BASE | ENTRY), parts


def test_layers_import_only_downward() -> None:
    for parts, names in modules().items():
        own = [n.split(".")[1] for n in names if n.startswith("selector_service.")]
        if parts[0] in BASE:
            assert set(own) <= BASE, (parts, own)
        elif parts[0] in LAYERS:
            level = LAYERS.index(parts[0])
            for target in own:
                assert target in BASE or (target in LAYERS and LAYERS.index(target) <= level), (parts, target)


def test_no_route_imports_another_route() -> None:
    for parts, names in modules().items():
        if parts[:2] == ("api", "routes"):
            assert not {n for n in names if n.startswith("selector_service.api.routes")}, parts


def test_sql_in_the_store_http_in_the_api_and_nothing_from_the_trainer() -> None:
    for parts, names in modules().items():
        roots = {n.split(".")[0] for n in names}
        assert "trainer" not in roots, parts
        if parts[0] != "store":
            assert "sqlalchemy" not in roots, parts
        if parts[0] in ("store", "cache", "domain"):
            assert "fastapi" not in roots, parts
            # starlette only for run_in_threadpool: the event loop never waits on the database or the model
            assert {n for n in names if n.startswith("starlette")} <= {"starlette.concurrency",
                                                                       "starlette.concurrency.run_in_threadpool"}, parts
