"""Layering: every kai module imports only from its own layer or below, peers stay apart,
and no two modules import each other (directly or through a cycle).

Layers, lowest first (a package imports only from lower layers, or from inside itself):

    0  kai._fast                                   compiled kernels; import nothing from kai
       kai.usage                                   time-based fair share's model (pure; below api/config)
    1  kai.api, kai.config                         plain model and config; no I/O
    2  kai.dra                                     DRA inventories, selectors, allocator (pure)
    3  kai.cache                                   the only package that talks to the API server
    4  kai.framework                               Session, Statement, registries, explanations
    5  kai.plugins | kai.actions | kai.podgrouper  peers: none imports another
    6  kai.scheduler                               one cycle
    7  kai.controller | kai.sim | kai.admission    peers: the live controller, the simulator,
       | kai.status | kai.nodescaleadjuster         the admission webhook, kai status, the
                                                   node-scale-adjuster
    8  kai.cli                                     the command line
    9  kai.__main__                                ``python -m kai``
    10 kai.testing                                 the test harness (may use anything)

Imports anywhere in a module count (also those inside functions), so a lazy import cannot
hide an upward dependency or a cycle.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

KAI = pathlib.Path(__file__).resolve().parent.parent / "kai"

LAYERS: list[tuple[str, ...]] = [
    ("kai._fast",),
    ("kai.usage",),
    ("kai.api", "kai.config"),
    ("kai.dra",),
    ("kai.cache",),
    ("kai.framework",),
    ("kai.plugins", "kai.actions", "kai.podgrouper"),
    ("kai.scheduler",),
    ("kai.controller", "kai.sim", "kai.admission", "kai.status", "kai.nodescaleadjuster"),
    ("kai.cli",),
    ("kai.__main__",),
    ("kai.testing",),
]


def unit_of(module: str) -> str | None:
    """The layer entry (package or module) a dotted module name belongs to."""
    for layer in LAYERS:
        for unit in layer:
            if module == unit or module.startswith(unit + "."):
                return unit
    return None


def layer_of(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(KAI.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".pyx", ".pxd"):
        # Cython: look at plain import lines only
        mods = set()
        for line in text.splitlines():
            parts = line.strip().split()
            if len(parts) >= 2 and parts[0] in ("import", "cimport", "from"):
                mods.add(parts[1].rstrip(","))
        return mods
    mods = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            mods.add(mod)
            # ``from kai.plugins import fgd`` imports the module kai.plugins.fgd
            mods.update(f"{mod}.{a.name}" for a in node.names if a.name != "*")
    return mods


def python_files() -> list[pathlib.Path]:
    return sorted(p for p in KAI.rglob("*") if p.suffix in (".py", ".pyx", ".pxd", ".pyi")
                  and "__pycache__" not in p.parts)


def kai_imports(path: pathlib.Path) -> set[str]:
    return {m for m in imported_modules(path) if m == "kai" or m.startswith("kai.")}


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(KAI)))
def test_imports_stay_in_their_layer(path):
    me = module_name(path)
    unit = unit_of(me)
    if unit is None:
        assert me == "kai", f"{me} is in no layer: add it to LAYERS in {__file__}"
        return
    mine = layer_of(unit)
    bad = []
    for m in kai_imports(path):
        if m == "kai":
            continue
        other = unit_of(m)
        if other is None:
            bad.append(f"{m} (in no layer)")
        elif other == unit:
            continue
        elif layer_of(other) > mine:
            bad.append(f"{m} (layer {layer_of(other)} {other} is above layer {mine} {unit})")
        elif layer_of(other) == mine:
            bad.append(f"{m} (peer {other}: peers must not import each other)")
    assert not bad, f"{me} imports upward or sideways: {sorted(bad)}"


def _graph() -> dict[str, set[str]]:
    """module -> kai modules it imports (names resolved to existing modules)."""
    files = [p for p in python_files() if p.suffix in (".py", ".pyx")]
    known = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for p in files:
        edges = set()
        for m in kai_imports(p):
            # ``from kai.x import name``: the module itself if it exists, else its package
            while m and m not in known:
                m = m.rsplit(".", 1)[0] if "." in m else ""
            if m and m != module_name(p):
                edges.add(m)
        graph[module_name(p)] = edges
    return graph


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ re-exporting its modules is not a cycle with them
    def edges(m):
        return {d for d in graph.get(m, ()) if not (m.startswith(d + ".") and d in graph)}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges(m)):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_scan_sees_imports():
    # guard against a scan that silently finds nothing
    assert "kai.api.k8s" in imported_modules(KAI / "api" / "pod_info.py")
    assert "kai.framework.session" in _graph()
    assert len(python_files()) > 50 and any(p.suffix == ".pyx" for p in python_files())
    assert unit_of("kai.plugins.proportion") == "kai.plugins"
    assert layer_of("kai.cache") < layer_of("kai.framework") < layer_of("kai.scheduler")
