"""The container image recipe, without a container engine: the Dockerfile parses
(instructions, a named builder stage, a runtime stage that copies only the builder's venv, a
non-root USER, the venv's `kai` as ENTRYPOINT, both stages on the BASE build argument whose
default is the official python:3.11-slim), and its build steps are replayed on this machine
(builder: tests/packaging/conftest.py `builder_root`; runtime: here), then `kai --version`
and `kai simulate` run with the image's ENTRYPOINT and ENV. The image built for real with
buildah and run as the chart runs it: tests/e2e/test_image.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pkgtools import DOCKERFILE, env_of, global_args, parse_dockerfile, run, shell_commands, timed, venv_env  # noqa: E402

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
    assert global_args('ARG A=x\nARG B="p q"\nARG C\nFROM ${A}\nARG D=1\n') == {"A": "x", "B": "p q", "C": ""}


def test_dockerfile_structure(dockerfile_stages):
    stages = dockerfile_stages
    assert len(stages) >= 2, "multi-stage build expected"
    builder, runtime = stages[0], stages[-1]
    assert builder.name, "the builder stage is named (FROM ... AS <name>)"
    # one base for both stages (the venv's interpreter is the runtime's), a build argument
    # whose default is the official slim Python
    args = global_args(DOCKERFILE.read_text())
    assert builder.base == runtime.base == "${BASE}"
    assert args["BASE"] == "python:3.11-slim"
    assert set(args["BUILD_PACKAGES"].split()) == {"gcc", "g++"}, "the slim base needs only a compiler"

    # builder: copies the sources, builds a wheel, installs it and the dependencies into /opt/kai
    copied = " ".join(i.args for i in builder.all("COPY"))
    for needed in ("pyproject.toml", "setup.py", "README.md", "kai"):
        assert needed in copied, f"builder stage does not COPY {needed}"
    builder_cmds = [c for i in builder.all("RUN") for c in shell_commands(i)]
    assert any(c.startswith("apt-get install") and "${BUILD_PACKAGES}" in c for c in builder_cmds)
    assert any(" wheel " in c and "--wheel-dir /wheels" in c for c in builder_cmds)
    assert any(c.startswith("python3 -m venv --without-pip /opt/kai") for c in builder_cmds)
    assert any("--python /opt/kai/bin/python install" in c and "/wheels/*.whl" in c for c in builder_cmds)
    # the dependency layer comes before the sources (a source edit reuses it)
    order = [i.args for i in builder.instructions if i.cmd in ("COPY", "RUN")]
    deps = next(n for n, a in enumerate(order) if "-r /tmp/requirements.txt" in a)
    assert deps < next(n for n, a in enumerate(order) if a.split()[0] == "kai")

    # runtime: the builder's venv only, no build tools, non-root, the venv's `kai` entrypoint
    copies = runtime.all("COPY")
    assert [(i.flags.get("from"), i.args.split()) for i in copies] == [(builder.name, ["/opt/kai", "/opt/kai"])]
    runtime_cmds = [c for i in runtime.all("RUN") for c in shell_commands(i)]
    assert not any("pip" in c or "gcc" in c or "apt-get" in c for c in runtime_cmds), runtime_cmds
    users = runtime.all("USER")
    assert users, "runtime stage sets USER"
    user, group = users[-1].args.split(":")
    assert (user, group) == ("65532", "65532")
    assert any(f"--uid {user}" in c and f"--gid {group}" in c for c in runtime_cmds), "the user is created"
    assert any(f"groupadd --system --gid {group}" in c for c in runtime_cmds), "its group is created"
    (entry,) = runtime.all("ENTRYPOINT")
    assert entry.exec_form == ["/opt/kai/bin/kai"]
    cmd = runtime.all("CMD")
    assert cmd and cmd[-1].exec_form == ["scheduler"]
    env = env_of(runtime)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"   # read-only root filesystem friendly
    assert env["PATH"].split(":")[0] == "/opt/kai/bin"


def test_dockerignore_keeps_the_context_small():
    lines = [ln.strip() for ln in (DOCKERFILE.parent / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "everything is excluded first"
    assert {ln[1:] for ln in lines if ln.startswith("!")} == {"pyproject.toml", "setup.py", "README.md", "LICENSE", "kai"}
    assert {"kai/**/*.so", "kai/**/*.c", "kai/**/__pycache__"} <= set(lines), "in-place build output stays out"


@pytest.mark.slow
def test_dockerfile_steps_in_a_venv(dockerfile_stages, builder_root: Path, tmp_path):
    """The runtime stage on the replayed builder's tree: its only COPY is the venv, which must
    work without the build venv, the sources and the wheels beside it (they are not in the
    image), and has no pip of its own."""
    runtime = dockerfile_stages[-1]
    (copy,) = runtime.all("COPY")
    src, dst = copy.args.split()
    assert src == dst == "/opt/kai"     # same path in both stages: the venv's scripts point into it
    venv = builder_root / dst.lstrip("/")
    assert (venv / "bin" / "kai").exists() and not (venv / "bin" / "pip").exists()
    hidden = [builder_root / p for p in ("opt/build", "src", "wheels")]
    for p in hidden:
        p.rename(p.with_name(p.name + ".hidden"))
    try:
        env = venv_env(venv / "bin", env_of(runtime))
        env["PATH"] = env["PATH"].replace("/opt/kai/bin", str(venv / "bin"))
        (entry,) = runtime.all("ENTRYPOINT")
        exe = str(builder_root / entry.exec_form[0].lstrip("/"))
        with timed("runtime stage (kai from the copied venv)"):
            assert run([exe, "--version"], cwd=tmp_path, env=env).stdout.strip() == f"kai {kai.__version__}"
            out = run([exe, "simulate"], cwd=tmp_path, env=env).stdout
        assert "too-big" in out and "bound" in out.lower()
        where = run([str(venv / "bin" / "python"), "-c", "import kai._fast.placement as p; print(p.__file__)"],
                    cwd=tmp_path, env=env).stdout
        assert where.startswith(str(venv)) and ".so" in where
        # CMD: `kai scheduler` is a known subcommand (its --help needs no cluster)
        cmd = runtime.all("CMD")[-1].exec_form
        assert "--kubeconfig" in run([exe, *cmd, "--help"], cwd=tmp_path, env=env).stdout
    finally:
        for p in hidden:
            p.with_name(p.name + ".hidden").rename(p)
    assert not os.listdir(tmp_path), "kai wrote into its working directory"
