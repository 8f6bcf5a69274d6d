"""Shared fixtures for the packaging tests: a wheelhouse of dependencies, the Dockerfile
parsed, and the project wheel built the way the Dockerfile's builder stage builds it.

Everything is built once per session in a temporary directory. Only ``pip download`` of
the dependency wheels uses the package index (pip's cache makes repeats cheap); every
install after that is ``--no-index --find-links`` (offline).
"""
from __future__ import annotations

import shlex
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from pkgtools import DOCKERFILE, REPO, TIMINGS, Stage, make_venv, parse_dockerfile, run, shell_commands, timed, venv_env


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "packaging timings")
        for k, v in TIMINGS.items():
            terminalreporter.write_line(f"{v:7.1f}s  {k}")


# ---------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def dockerfile_stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="session")
def packaging_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="session")
def deps_wheelhouse(packaging_dir: Path) -> Path:
    """Wheels of the runtime dependencies and the build requirements (pyproject.toml),
    made beforehand with `pip download` so every later install runs offline."""
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = list(py["project"]["dependencies"]) + list(py["build-system"]["requires"])
    dest = packaging_dir / "deps"
    with timed("pip download (dependency wheelhouse)"):
        run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
             "--dest", str(dest), *reqs], timeout=600)
    return dest


@pytest.fixture(scope="session")
def built_wheels(dockerfile_stages: list[Stage], deps_wheelhouse: Path, packaging_dir: Path) -> Path:
    """The Dockerfile's builder stage, replayed in a fresh venv: the files it COPYs into a
    clean source tree at its WORKDIR, then its `pip` commands (offline: `--no-index
    --find-links <wheelhouse>` added; `/wheels` mapped to a temp dir). System package steps
    (apt-get) are skipped: the compiler is already here. Returns the wheel directory."""
    builder = next(s for s in dockerfile_stages if s.name)
    root = packaging_dir / "builder-root"
    wheels = packaging_dir / "wheels"
    workdir = root
    bin_dir = make_venv(packaging_dir / "builder-venv")
    env = venv_env(bin_dir)
    offline = f"--no-index --find-links {shlex.quote(str(deps_wheelhouse))}"
    with timed("builder stage (venv, build deps, compile, pip wheel)"):
        for ins in builder.instructions:
            if ins.cmd == "WORKDIR":
                workdir = root / ins.args.strip().lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif ins.cmd == "COPY":
                assert "from" not in ins.flags, "the builder stage copies from the build context only"
                *srcs, dst = ins.exec_form or shlex.split(ins.args)
                target = workdir / dst if not dst.startswith("/") else root / dst.lstrip("/")
                for src in srcs:
                    s = REPO / src
                    if s.is_dir():
                        shutil.copytree(s, target, ignore=shutil.ignore_patterns(
                            "__pycache__", "*.so", "*.c", "*.html", "*.pyc"), dirs_exist_ok=True)
                    elif dst.endswith("/"):
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(s, target / s.name)
                    else:
                        shutil.copy2(s, target)
            elif ins.cmd == "RUN":
                for c in shell_commands(ins):
                    if not c.startswith("pip "):
                        continue
                    c = c.replace("/wheels", shlex.quote(str(wheels)))
                    c = c.replace("pip install", f"pip install {offline}", 1).replace(
                        "pip wheel", f"pip wheel {offline}", 1)
                    run(f"python -m {c}", cwd=workdir, env=env, shell=True)
    assert list(wheels.glob("kai-*.whl")), f"no kai wheel in {sorted(p.name for p in wheels.iterdir())}"
    return wheels
