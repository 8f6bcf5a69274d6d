"""Helpers for the packaging tests: a small Dockerfile parser, venv and subprocess helpers."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
TIMINGS: dict[str, float] = {}


# ---------------------------------------------------------------------- Dockerfile parser


@dataclass
class Instruction:
    cmd: str                      # upper case: FROM, RUN, COPY, ...
    args: str                     # the rest of the line, continuations joined
    flags: dict[str, str] = field(default_factory=dict)   # --from=build, --chown=...
    line: int = 0

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of RUN/CMD/ENTRYPOINT, or None for the shell form."""
        s = self.args.strip()
        if s.startswith("["):
            value = json.loads(s)
            if not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
                raise ValueError(f"line {self.line}: exec form must be a JSON list of strings")
            return value
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]


KNOWN = {"FROM", "RUN", "COPY", "ADD", "ENTRYPOINT", "CMD", "ENV", "ARG", "WORKDIR", "USER", "LABEL",
         "EXPOSE", "VOLUME", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "ONBUILD"}


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: line continuations, comments and parser directives handled;
    unknown instructions, instructions before FROM and bad exec forms are errors."""
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue                                   # blank, comment or `# syntax=` directive
        if buf and stripped.startswith("#"):
            continue                                   # comment inside a continuation
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1].rstrip() + " "
            continue
        buf += stripped
        logical.append((start, buf))
        buf = ""
    if buf:
        raise ValueError(f"line {start}: continuation at end of file")

    stages: list[Stage] = []
    for n, line in logical:
        word, _, rest = line.partition(" ")
        cmd = word.upper()
        if cmd not in KNOWN:
            raise ValueError(f"line {n}: unknown instruction {word!r}")
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            tok, _, rest = rest.partition(" ")
            k, _, v = tok[2:].partition("=")
            flags[k] = v
            rest = rest.strip()
        ins = Instruction(cmd, rest, flags, n)
        if cmd == "FROM":
            parts = rest.split()
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.append(Stage(parts[0], parts[2]))
            elif len(parts) == 1:
                stages.append(Stage(parts[0], None))
            else:
                raise ValueError(f"line {n}: bad FROM {rest!r}")
            continue
        if not stages:
            if cmd == "ARG":
                continue
            raise ValueError(f"line {n}: {cmd} before the first FROM")
        if cmd in ("RUN", "CMD", "ENTRYPOINT"):
            ins.exec_form                                  # validates the JSON form
        stages[-1].instructions.append(ins)
    if not stages:
        raise ValueError("no FROM")
    return stages


def global_args(text: str) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults ("" when none): the
    values ``${NAME}`` in a FROM line takes unless --build-arg overrides them."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            break
        if word.upper() == "ARG":
            k, _, v = rest.strip().partition("=")
            out[k] = shlex.split(v)[0] if v else ""
    return out


def shell_commands(ins: Instruction) -> list[str]:
    """The `&&`-separated commands of a shell-form RUN."""
    form = ins.exec_form
    if form is not None:
        return [shlex.join(form)]
    return [c.strip() for c in ins.args.split("&&") if c.strip()]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        toks = shlex.split(ins.args)
        if len(toks) >= 2 and "=" not in toks[0]:
            env[toks[0]] = " ".join(toks[1:])          # legacy `ENV KEY value`
        else:
            for t in toks:
                k, _, v = t.partition("=")
                env[k] = v
    return env


# ---------------------------------------------------------------------- helpers

def run(argv: list[str] | str, *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 900, shell: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, shell=shell,
                          executable="/bin/bash" if shell else None)
    if proc.returncode != 0:
        raise AssertionError(f"{argv!r} failed ({proc.returncode})\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def make_venv(path: Path) -> Path:
    """A fresh virtual environment (no system site-packages); returns its bin directory."""
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(path)
    return path / "bin"


def venv_env(bin_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    env.update({"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(bin_dir.parent),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"})
    env.update(extra or {})
    return env


class timed:
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> timed:
        self.t = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.what] = time.monotonic() - self.t
