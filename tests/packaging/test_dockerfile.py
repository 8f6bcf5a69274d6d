"""The container image recipe. No container engine runs here, so: the Dockerfile parses
(instructions, a named builder stage, a slim runtime stage that copies the builder's wheels,
a non-root USER, `kai` as ENTRYPOINT), and its build and install steps are replayed in fresh
virtual environments (builder: tests/packaging/conftest.py `built_wheels`; runtime: here),
then `kai --version` and `kai simulate` run with the image's ENTRYPOINT and ENV."""
from __future__ import annotations

import shlex

import pytest

from pkgtools import (DOCKERFILE, env_of, make_venv, parse_dockerfile, run, shell_commands,  # noqa: E402
                      timed, venv_env)

import kai


def test_parser_rejects_broken_files():
    for bad in ("RUN echo hi\n", "FROM a\nFROBNICATE x\n", "FROM a\nENTRYPOINT [\"kai\"\n",
                "FROM a AS\n", "FROM a\nRUN echo \\\n"):
        with pytest.raises(ValueError):
            parse_dockerfile(bad)
    (st,) = parse_dockerfile("# syntax=docker/dockerfile:1\nARG V=1\nFROM python:3.11 AS b\n"
                             "RUN a \\\n  # comment\n  && b\nCOPY --from=x /w /w\n")
    assert st.name == "b" and shell_commands(st.all("RUN")[0]) == ["a", "b"]
    assert st.all("COPY")[0].flags == {"from": "x"}


def test_dockerfile_structure(dockerfile_stages):
    stages = dockerfile_stages
    assert len(stages) >= 2, "multi-stage build expected"
    builder, runtime = stages[0], stages[-1]
    assert builder.name, "the builder stage is named (FROM ... AS <name>)"
    assert builder.base.startswith("python:3.11")
    assert runtime.base.startswith("python:3.11") and "slim" in runtime.base

    # builder: copies the sources and builds a wheel
    copied = " ".join(i.args for i in builder.all("COPY"))
    for needed in ("pyproject.toml", "setup.py", "README.md", "kai"):
        assert needed in copied, f"builder stage does not COPY {needed}"
    builder_cmds = [c for i in builder.all("RUN") for c in shell_commands(i)]
    assert any(c.startswith("pip wheel") for c in builder_cmds)

    # runtime: installs the builder's wheels only, runs as non-root, `kai` entrypoint
    froms = [i.flags.get("from") for i in runtime.all("COPY")]
    assert builder.name in froms, "runtime stage copies from the named builder"
    assert all(i.flags.get("from") for i in runtime.all("COPY")), "runtime copies no build context"
    runtime_cmds = [c for i in runtime.all("RUN") for c in shell_commands(i)]
    assert any(c.startswith("pip install") and "/wheels/" in c for c in runtime_cmds)
    assert not any("gcc" in c or "apt-get install" in c for c in runtime_cmds), "no compiler in the runtime image"
    users = runtime.all("USER")
    assert users, "runtime stage sets USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), f"USER {user} is root"
    if user.isdigit():
        assert int(user) > 0 and any(f"--uid {user}" in c for c in runtime_cmds), "the numeric user is created"
    (entry,) = runtime.all("ENTRYPOINT")
    assert entry.exec_form == ["kai"]
    cmd = runtime.all("CMD")
    assert cmd and cmd[-1].exec_form == ["scheduler"]
    assert env_of(runtime).get("PYTHONDONTWRITEBYTECODE") == "1"   # read-only root filesystem friendly


@pytest.mark.slow
def test_dockerfile_steps_in_a_venv(dockerfile_stages, built_wheels, packaging_dir, tmp_path):
    runtime = dockerfile_stages[-1]
    bin_dir = make_venv(packaging_dir / "runtime-venv")
    env = venv_env(bin_dir, env_of(runtime))
    wheels = {i.args.split()[0]: i.args.split()[1] for i in runtime.all("COPY") if i.flags.get("from")}
    assert wheels == {"/wheels": "/wheels"}
    with timed("runtime stage (pip install of the builder's wheels)"):
        for ins in runtime.all("RUN"):
            for c in shell_commands(ins):
                if not c.startswith("pip "):
                    continue        # rm -rf /wheels, useradd: image housekeeping, not replayed
                c = c.replace("/wheels/*.whl", " ".join(shlex.quote(str(p)) for p in sorted(built_wheels.glob("*.whl"))))
                c = c.replace("pip install", f"pip install --no-index --find-links {shlex.quote(str(built_wheels))}", 1)
                run(f"python -m {c}", cwd=tmp_path, env=env, shell=True)
    (entry,) = runtime.all("ENTRYPOINT")
    exe = str(bin_dir / entry.exec_form[0])
    assert run([exe, "--version"], cwd=tmp_path, env=env).stdout.strip() == f"kai {kai.__version__}"
    out = run([exe, "simulate"], cwd=tmp_path, env=env).stdout
    assert "too-big" in out and "bound" in out.lower()
    # CMD: `kai scheduler` is a known subcommand (its --help needs no cluster)
    cmd = runtime.all("CMD")[-1].exec_form
    assert "--kubeconfig" in run([exe, *cmd, "--help"], cwd=tmp_path, env=env).stdout
