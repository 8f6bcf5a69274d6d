"""Layering: _fast imports nothing from kai; api stays below cache/framework/actions/plugins."""
import ast
import pathlib

import pytest

KAI = pathlib.Path(__file__).resolve().parent.parent / "kai"


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
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
    return mods


def files(package: str, suffixes=(".py",)):
    return sorted(p for p in (KAI / package).rglob("*") if p.suffix in suffixes)


@pytest.mark.parametrize("path", files("_fast", (".py", ".pyx", ".pxd", ".pyi")),
                         ids=lambda p: str(p.relative_to(KAI)))
def test_fast_imports_nothing_from_kai(path):
    bad = {m for m in imported_modules(path) if m == "kai" or (m.startswith("kai.") and not m.startswith("kai._fast"))}
    assert not bad, f"{path.relative_to(KAI)} imports {sorted(bad)}"


FORBIDDEN_FOR_API = ("kai.cache", "kai.framework", "kai.actions", "kai.plugins", "kai.sim", "kai.cli",
                     "kai.scheduler")


@pytest.mark.parametrize("path", files("api"), ids=lambda p: str(p.relative_to(KAI)))
def test_api_does_not_import_upper_layers(path):
    bad = {m for m in imported_modules(path) if m.startswith(FORBIDDEN_FOR_API)}
    assert not bad, f"{path.relative_to(KAI)} imports {sorted(bad)}"


FORBIDDEN_FOR_DRA = ("kai.cache", "kai.framework", "kai.actions", "kai.plugins", "kai.sim", "kai.cli",
                     "kai.scheduler", "kai.controller")


@pytest.mark.parametrize("path", files("dra"), ids=lambda p: str(p.relative_to(KAI)))
def test_dra_sits_below_cache(path):
    """kai.dra (inventories, selectors, allocator) uses only api and _fast: cache feeds it, the
    framework calls it."""
    bad = {m for m in imported_modules(path) if m.startswith(FORBIDDEN_FOR_DRA)}
    assert not bad, f"{path.relative_to(KAI)} imports {sorted(bad)}"


def test_scan_sees_imports():
    # guard against a scan that silently finds nothing
    assert "kai.api.k8s" in imported_modules(KAI / "api" / "pod_info.py")
    assert files("api") and files("_fast", (".pyx",))
