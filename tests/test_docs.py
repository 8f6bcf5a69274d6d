"""Docs that the code keeps true.

Every name a reader may type from README.md, docs/*.md or the Helm chart (values.yaml,
templates/) must exist in the code, and what the docs list as *not* in kai must indeed be
absent:

- command-line flags: ``kai``'s argparse parser (``kai.cli.build_parser``), the ``--help`` of
  the scripts the docs run (bench/, ``python -m kai.testing.controlplane``), and the flags
  of other tools named in :data:`OTHER_TOOLS_FLAGS`; KAI flags the docs say kai lacks
  (:data:`KAI_FLAGS_KAI_LACKS`) must be absent from kai's parser;
- ``kai ...`` subcommands;
- Prometheus metrics (``kai_...``): the metrics registry of ``kai.controller.metrics``;
  the names docs/metrics.md lists as "Not exported" must not be in it;
- the scheduler config: every YAML example with ``actions`` / ``tiers`` parses with
  ``kai.config.parse_config`` and names only plugin arguments the plugins read; the
  configuration reference's plugin table says "yes" exactly for the registered plugins;
- Helm values: dotted value paths (``scheduler.placementStrategy``, ``--set a.b=c``, the
  configuration reference's table, the templates' ``.Values.*``) resolve in
  values.schema.json; KAI values the docs say the chart lacks do not;
- environment variables ``KAI_*``: read somewhere in the code, tests, benchmarks or scripts.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kai-scheduler"
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
CHART_TEXT = sorted([CHART / "values.yaml", *(p for p in (CHART / "templates").iterdir() if p.is_file())])

#: flags of other programs the docs show (helm, kubectl, kind, docker, pytest, pip, py-spy,
#: kube-scheduler, go), by tool
OTHER_TOOLS_FLAGS = {
    "helm": {"--set", "--namespace", "--create-namespace", "--skip-crds", "--version", "--values", "--dry-run",
             "--wait", "--kube-version", "--install"},
    "kubectl": {"--server-side", "--as", "--all-namespaces", "--selector", "--output", "--namespace",
                "--field-selector"},
    "kind": {"--name"},
    "docker": {"--tag", "--build-arg", "--secret"},
    "mmdebstrap": {"--variant", "--include"},
    "pytest": {"--benchmark-enable", "--benchmark-disable-gc", "--benchmark-min-rounds", "--benchmark-max-time",
               "--benchmark-only", "--benchmark-json"},
    "pip": {"--no-build-isolation", "--disable-pip-version-check"},
    "py-spy": {"--nonblocking"},
    "kube-scheduler": {"--kube-api-qps", "--kube-api-burst", "--config"},
    "git": {"--depth", "--branch"},
}
#: KAI-Scheduler flags docs/configuration.md lists as not in kai (checked absent)
KAI_FLAGS_KAI_LACKS = {"--update-pod-eviction-condition", "--num-of-status-recording-workers", "--pyroscope-address"}
#: scripts whose flags the docs use, run with --help
SCRIPTS = [[sys.executable, str(REPO / "bench" / "bench_live.py")],
           [sys.executable, str(REPO / "bench" / "bench_traces.py")],
           [sys.executable, str(REPO / "bench" / "bench_reclaim.py")],
           [sys.executable, str(REPO / "bench" / "bench_hyperscale.py")],
           [sys.executable, str(REPO / "bench" / "soak.py")],
           [sys.executable, "-m", "kai.testing.controlplane", "up"]]
#: KAI chart values docs/configuration.md says this chart does not have (checked absent)
KAI_VALUES_KAI_LACKS = {"operator", "podgrouper", "podgroupcontroller", "binder", "queuecontroller",
                        "crdupgrader", "topologyMigration", "postCleanup",
                        "global.tag", "global.imagePullPolicy"}
#: plugins the configuration reference lists as built into the placement kernel
BUILT_IN_PLUGINS = {"nodeavailability", "resourcetype"}
FILE_SUFFIXES = (".md", ".yaml", ".yml", ".json", ".py", ".txt", ".sh", ".png", ".csv", ".tpl", ".go", ".pyx",
                 ".pxd", ".toml", ".cfg")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _backticked(text: str) -> list[str]:
    """Inline code spans (fenced blocks excluded)."""
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))


def _code_blocks(text: str, lang: str | None = None) -> list[str]:
    return [body for tag, body in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S) if lang is None or tag == lang]


# ---------------------------------------------------------------------- flags
def _kai_parser_flags() -> tuple[set[str], set[str]]:
    """(every option string of kai and its subcommands, the subcommand names)."""
    import argparse

    from kai.cli import build_parser

    flags: set[str] = set()
    commands: set[str] = set()

    def walk(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    commands.add(name)
                    walk(sub)
    walk(build_parser())
    return flags, commands


def _script_flags() -> set[str]:
    out: set[str] = set()
    for argv in SCRIPTS:
        got = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO,
                             env={"PYTHONPATH": f"{REPO}{':'}{REPO / 'bench'}", "PATH": "/usr/bin:/bin"})
        assert got.returncode == 0, f"{' '.join(argv)} --help failed: {got.stderr[-2000:]}"
        out.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", got.stdout))
    return out


def _flags_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w/.-])--[a-z][a-z0-9-]*", text))


def test_every_flag_the_docs_name_exists():
    kai_flags, _ = _kai_parser_flags()
    known = kai_flags | _script_flags() | set().union(*OTHER_TOOLS_FLAGS.values()) | KAI_FLAGS_KAI_LACKS
    unknown = {}
    for path in DOCS + CHART_TEXT:
        bad = sorted(_flags_in(_text(path)) - known)
        if bad:
            unknown[_rel(path)] = bad
    assert not unknown, f"flags named in the docs that no program has: {unknown}"


def test_kai_flags_the_docs_say_kai_lacks_are_absent():
    kai_flags, _ = _kai_parser_flags()
    assert not KAI_FLAGS_KAI_LACKS & kai_flags, ("kai has these now: update docs/configuration.md ('KAI flags "
                                                 f"kai does not have yet'): {sorted(KAI_FLAGS_KAI_LACKS & kai_flags)}")
    lacks = re.search(r"KAI flags kai does not have yet:(.*?)\n\n", _text(REPO / "docs" / "configuration.md"), re.S)
    assert lacks, "docs/configuration.md lost its list of KAI flags kai does not have"
    assert _flags_in(lacks.group(1)) <= KAI_FLAGS_KAI_LACKS


def test_chart_templates_pass_only_flags_kai_has():
    kai_flags, _ = _kai_parser_flags()
    for name in ("_scheduler_deployment.tpl", "shards.yaml", "admission.yaml"):
        used = _flags_in(_text(CHART / "templates" / name))
        assert used and used <= kai_flags, f"templates/{name}: {sorted(used - kai_flags)}"


def test_kai_subcommands_the_docs_name_exist():
    _, commands = _kai_parser_flags()
    named = set()
    for path in DOCS:
        text = _text(path)
        for span in _backticked(text):
            m = re.match(r"kai ([a-z][a-z-]*)", span)
            if m and not span.startswith("kai scheduler config"):
                named.add((m.group(1), _rel(path)))
        for block in _code_blocks(text):
            for line in block.splitlines():
                for m in re.finditer(r"(?:^|&&\s*|\$\s+)kai ([a-z][a-z-]*)", line.strip()):
                    named.add((m.group(1), _rel(path)))
    bad = sorted((c, f) for c, f in named if c not in commands)
    assert not bad, f"`kai <command>` with no such command: {bad}"


# ---------------------------------------------------------------------- metrics
def _exported() -> tuple[set[str], set[str]]:
    """(metric family names without the prefix, every sample name with it) of kai's registry."""
    from kai.controller.metrics import Metrics

    families, samples = set(), set()
    for fam in Metrics("kai").registry.collect():
        families.add(fam.name.removeprefix("kai_"))
        samples.add(fam.name)
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                    "summary": ("_count", "_sum", "_created")}.get(fam.type, ())
        samples.update(fam.name + s for s in suffixes)
    return families, samples


def test_every_metric_the_docs_name_is_exported():
    _, samples = _exported()
    unknown = {}
    for path in DOCS + CHART_TEXT:
        bad = sorted(set(re.findall(r"\bkai_[a-z][a-z0-9_]*", _text(path))) - samples)
        if bad:
            unknown[_rel(path)] = bad
    assert not unknown, f"metrics named in the docs that kai does not export: {unknown}"


def test_metrics_the_docs_call_not_exported_are_absent():
    families, _ = _exported()
    text = _text(REPO / "docs" / "metrics.md")
    m = re.search(r"Not exported[^\n]*\n?(.*?)(?:\n\n|$)", text, re.S)
    assert m, "docs/metrics.md lost its 'Not exported' list"
    names = [n for n in re.findall(r"`([a-z_*]+)`", m.group(0))]
    assert names
    for n in names:
        pattern = re.compile("^" + n.replace("*", "[a-z_]*") + "$")
        hits = sorted(f for f in families if pattern.match(f))
        assert not hits, f"docs/metrics.md says `{n}` is not exported, but kai exports {hits}"


def test_metrics_reference_lists_every_exported_metric():
    families, _ = _exported()
    table = _text(REPO / "docs" / "metrics.md")
    missing = sorted(f for f in families if f"kai_{f}" not in table)
    assert not missing, f"exported but not in docs/metrics.md: {missing}"


# ---------------------------------------------------------------------- scheduler config
def _plugin_argument_keys() -> set[str]:
    """Argument names the plugins read (string literals passed to ``.get`` in kai/plugins, and
    argument-name constants ``ARGUMENT = "..."`` of the modules they delegate to, e.g. kai/dra)."""
    keys = {"gpu", "cpu"}                    # nodeplacement reads them in a loop
    for f in (REPO / "kai" / "plugins").glob("*.py"):
        keys.update(re.findall(r"\.get\(\s*\"([a-z]+[A-Z][A-Za-z]*)\"", _text(f)))
    for f in (REPO / "kai").glob("*/*.py"):
        keys.update(re.findall(r"^ARGUMENT\s*=\s*\"([A-Za-z]+)\"", _text(f), re.M))
    return keys


def _config_examples() -> list[tuple[str, dict]]:
    out = []
    for path in DOCS:
        for block in _code_blocks(_text(path), "yaml"):
            try:
                docs = list(yaml.safe_load_all(block))
            except yaml.YAMLError:
                continue
            for d in docs:
                if isinstance(d, dict) and ("tiers" in d or ("actions" in d and isinstance(d["actions"], str))):
                    out.append((_rel(path), d))
    return out


def test_config_examples_in_the_docs_parse_and_use_known_arguments():
    from kai.config import parse_config

    examples = _config_examples()
    assert examples, "no scheduler config example found in the docs"
    known = _plugin_argument_keys()
    for where, doc in examples:
        cfg = parse_config(doc, where)
        for p in cfg.plugins:
            bad = set(p.arguments) - known
            assert not bad, f"{where}: plugin {p.name} argument(s) {sorted(bad)} are read by no plugin"


def test_configuration_reference_plugin_table_matches_the_registry():
    import kai.actions  # noqa: F401  (registers)
    import kai.plugins  # noqa: F401  (registers)
    from kai.config import KAI_PLUGINS
    from kai.framework.plugin import PLUGINS

    text = _text(REPO / "docs" / "configuration.md")
    section = text.split("### Plugins", 1)[1].split("\n\n", 2)[1]
    known_args = _plugin_argument_keys()
    rows = [r for r in section.splitlines() if r.startswith("| `")]
    assert rows
    seen = set()
    for row in rows:
        name_cell, in_kai, args = [c.strip() for c in row.strip("|").split("|")][:3]
        names = re.findall(r"`([a-z]+)`", name_cell)
        seen.update(names)
        for n in names:
            assert n in KAI_PLUGINS, f"configuration.md names plugin {n!r}, unknown to kai.config"
            if in_kai.startswith("yes"):
                assert n in PLUGINS, f"configuration.md says plugin {n} is in kai; it is not registered"
            elif in_kai.startswith("built into"):
                assert n in BUILT_IN_PLUGINS
            else:
                assert n not in PLUGINS, f"configuration.md says plugin {n} is not implemented; it is registered"
        for arg in re.findall(r"`([a-z]+[A-Z][A-Za-z]*)`", args):
            assert arg in known_args, f"configuration.md: {names} argument {arg} is read by no plugin"
    assert set(PLUGINS) <= seen, f"registered but not in the plugin table: {sorted(set(PLUGINS) - seen)}"


# ---------------------------------------------------------------------- Helm values
def _schema() -> dict:
    return json.loads(_text(CHART / "values.schema.json"))


def _resolves(schema: dict, path: str) -> bool:
    """Whether the dotted ``path`` names something values.schema.json allows."""
    return _walk(schema, path.split("."))


def _walk(node: dict, parts: list[str]) -> bool:
    if not parts:
        return True
    if any(_walk(branch, parts) for key in ("oneOf", "anyOf", "allOf") for branch in node.get(key, [])):
        return True
    part, rest = parts[0], parts[1:]
    props = node.get("properties") or {}
    if part in props:
        return _walk(props[part], rest)
    names = (node.get("propertyNames") or {}).get("enum")
    if names is not None and part not in names:
        return False
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return _walk(extra, rest)
    types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
    return extra is True or (extra is None and "object" in types and not props)


def _value_paths_in(text: str, tops: set[str]) -> set[str]:
    """Dotted value paths: inline code like `scheduler.replicaCount` and `--set a.b=c`."""
    out = set()
    candidates = [s.split("=", 1)[0] for s in _backticked(text)]
    candidates += re.findall(r"--set[ =]([A-Za-z][\w.-]*)=", text)
    for c in candidates:
        c = c.strip()
        if "*" in c or c.endswith(FILE_SUFFIXES) or not re.fullmatch(r"[A-Za-z][\w-]*(\.[A-Za-z][\w-]*)+", c):
            continue
        if c.split(".", 1)[0] in tops:
            out.add(c)
    return out


def test_every_value_path_the_docs_name_is_in_the_schema():
    schema = _schema()
    tops = set(schema["properties"])
    unknown = {}
    plugin_args = _plugin_argument_keys()
    for path in DOCS + [CHART / "values.yaml"]:
        named = _value_paths_in(_text(path), tops) - KAI_VALUES_KAI_LACKS
        bad = sorted(p for p in named if not _resolves(schema, p))
        # scheduler.plugins.<plugin>.arguments.<argument>: an argument some plugin reads
        bad += sorted(p for p in named if re.fullmatch(r"scheduler\.plugins\.\w+\.arguments\.\w+", p)
                      and p.rsplit(".", 1)[1] not in plugin_args)
        if bad:
            unknown[_rel(path)] = bad
    assert not unknown, f"Helm values named in the docs that the chart does not have: {unknown}"


def test_configuration_reference_values_table_resolves():
    schema = _schema()
    text = _text(REPO / "docs" / "configuration.md").split("## Helm values", 1)[1]
    rows = [r for r in text.splitlines() if r.startswith("| `")]
    assert len(rows) > 20
    for row in rows:
        cell = row.strip("|").split("|")[0]
        parent = ""
        for tok in re.findall(r"`([^`]+)`", cell):
            if tok.startswith("."):
                path = parent + tok
            else:
                path = tok
                parent = tok.rsplit(".", 1)[0] if "." in tok else tok
            assert _resolves(schema, path), f"configuration.md Helm values: {path} is not in values.schema.json"


def test_kai_values_the_docs_say_the_chart_lacks_are_absent():
    schema = _schema()
    text = _text(REPO / "docs" / "configuration.md")
    listed = re.search(r"KAI values with no kai equivalent(.*?)(?:\n\n|$)", text, re.S)
    assert listed, "docs/configuration.md lost its list of KAI values the chart does not have"
    names = {n for n in re.findall(r"`([A-Za-z.]+)`", listed.group(1))}
    assert KAI_VALUES_KAI_LACKS <= names, sorted(KAI_VALUES_KAI_LACKS - names)
    there = sorted(p for p in KAI_VALUES_KAI_LACKS if p.split(".")[0] in schema["properties"] and _resolves(schema, p))
    assert not there, f"the chart has these now: update docs/configuration.md: {there}"


def test_templates_read_only_values_the_schema_has():
    schema = _schema()
    for path in (CHART / "templates").iterdir():
        text = _text(path)
        refs = set(re.findall(r"\.Values\.([A-Za-z][\w.]*)", text))
        for alias, base in re.findall(r"\$(\w+)\s*:=\s*\.Values\.([A-Za-z][\w.]*)", text):
            refs.update(f"{base}.{rest}" for rest in re.findall(rf"\${alias}\.([A-Za-z][\w.]*)", text))
        bad = sorted(r for r in refs if not _resolves(schema, r.rstrip(".")))
        assert not bad, f"templates/{path.name} reads values not in values.schema.json: {bad}"


# ---------------------------------------------------------------------- environment variables
def test_every_kai_environment_variable_the_docs_name_is_read():
    code = "\n".join(_text(p) for d in ("kai", "bench", "tests", "scripts", "hack")
                     for p in (REPO / d).rglob("*") if p.is_file() and p.suffix in (".py", ".sh", ".pyx", "")
                     and p != Path(__file__))
    unknown = {}
    for path in DOCS + CHART_TEXT:
        bad = sorted(v for v in set(re.findall(r"\bKAI_[A-Z][A-Z0-9_]*", _text(path))) if v not in code)
        if bad:
            unknown[_rel(path)] = bad
    assert not unknown, f"environment variables named in the docs that nothing reads: {unknown}"


@pytest.mark.parametrize("page", [p for p in DOCS], ids=[_rel(p) for p in DOCS])
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", _text(page), flags=re.S)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        assert (page.parent / target).exists(), f"{_rel(page)} links to {target}, which does not exist"


def test_supported_kubernetes_version_is_stated_once():
    """README and docs/install.md give the same minimum; the chart's kubeVersion admits it
    (it is looser on purpose, see docs/install.md)."""
    readme = re.search(r"Supported Kubernetes versions: (1\.\d+) and newer", _text(REPO / "README.md"))
    install = re.search(r"Kubernetes (1\.\d+) or newer", _text(REPO / "docs" / "install.md"))
    chart = re.search(r'kubeVersion: ">=(1\.\d+)\.', _text(CHART / "Chart.yaml"))
    assert readme and install and chart
    assert readme.group(1) == install.group(1)
    assert int(chart.group(1).split(".")[1]) <= int(readme.group(1).split(".")[1])
