"""Shared fixtures for the packaging tests: a wheelhouse of dependencies, the Dockerfile
parsed, and the project wheel built the way the Dockerfile's builder stage builds it.

Everything is built once per session in a temporary directory. Only ``pip download`` of
the dependency wheels uses the package index (pip's cache makes repeats cheap); every
install after that is ``--no-index --find-links`` (offline).
"""
from __future__ import annotations

import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from pkgtools import DOCKERFILE, REPO, TIMINGS, Stage, parse_dockerfile, run, shell_commands, timed, venv_env


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


# Absolute paths of the image that the replays map into a directory standing for its root.
IMAGE_PATHS = re.compile(r"(?<![\w./-])/(opt|src|wheels|tmp)(?=[/\s'\"]|$)")


def image_command(cmd: str, root: Path, offline: str = "") -> str:
    """A RUN command as this machine runs it: the image's paths mapped under ``root``,
    ``python3`` this interpreter, pip offline (``offline`` after `install` / `wheel`)."""
    cmd = IMAGE_PATHS.sub(lambda m: f"{root}/{m.group(1)}", cmd)
    cmd = re.sub(r"^python3 ", shlex.quote(sys.executable) + " ", cmd)
    if offline:
        cmd = re.sub(r"(/pip(?: --python \S+)?) (install|wheel) ", rf"\1 \2 {offline} ", cmd)
    return cmd


@pytest.fixture(scope="session")
def builder_root(dockerfile_stages: list[Stage], deps_wheelhouse: Path, packaging_dir: Path) -> Path:
    """The Dockerfile's builder stage, replayed on this machine (the default base's kind of
    Python: not Debian's) in a directory standing for the image's root: its COPYs into that
    tree, its RUN commands through :func:`image_command` (offline, from the wheelhouse).
    Skipped: the system package step (apt-get: the compiler is already here) and the optional
    build secret's ``export PIP_CERT`` (pip runs offline). Returns the root, whose opt/kai is
    the venv the runtime stage copies and whose wheels/ holds the project's wheel."""
    builder = next(s for s in dockerfile_stages if s.name)
    root = packaging_dir / "image-root"
    (root / "tmp").mkdir(parents=True)
    workdir = root
    env = venv_env(root / "opt" / "build" / "bin")    # as if the build venv were active
    offline = f"--no-index --find-links {shlex.quote(str(deps_wheelhouse))}"
    with timed("builder stage (build venv, runtime venv with dependencies, compile, pip wheel)"):
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
                cmds = shell_commands(ins)
                if cmds[0].startswith("apt-get"):
                    continue
                for c in cmds:
                    if c.startswith("if [ -s /run/secrets/"):
                        continue
                    run(image_command(c, root, offline), cwd=workdir, env=env, shell=True)
    assert list((root / "wheels").glob("kai-*.whl")), f"no kai wheel in {root / 'wheels'}"
    return root


@pytest.fixture(scope="session")
def built_wheels(builder_root: Path) -> Path:
    """The wheel directory of the replayed builder stage (the project's wheel)."""
    return builder_root / "wheels"
