"""Fuzzed manifests through ``kai simulate`` (issue 16): malformed and extreme Pods, Nodes,
Queues, PodGroups, PriorityClasses and Topologies never crash it; every document is either
loaded, or named in an error or warning; the good objects are always scheduled.

Examples: KAI_FUZZ_EXAMPLES (default 4,000; with tests/controller/test_fuzz_objects.py 10,000
in CI). Derandomized (the same examples every run) unless KAI_FUZZ_RANDOM=1.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re

import yaml
from hypothesis import HealthCheck, given, settings

from kai.cli import main
from kai.config import default_config
from kai.sim.loader import load_manifests
from kai.sim.simulator import format_table, simulate, without_timings
from kai.testing.fuzzobjects import good_pod_keys, scenarios

EXAMPLES = int(os.environ.get("KAI_FUZZ_EXAMPLES", "4000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=os.environ.get("KAI_FUZZ_RANDOM") != "1",
                suppress_health_check=list(HealthCheck))


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@FUZZ
@given(scenarios())
def test_fuzzed_manifests_never_crash_simulate(tmp_path_factory, sc):
    path = tmp_path_factory.getbasetemp() / ("fuzz.json" if sc.has_big else "fuzz.yaml")
    docs = sc.objects
    path.write_text(json.dumps({"kind": "List", "items": docs}) if sc.has_big
                    else yaml.dump_all(docs, Dumper=_Dumper, allow_unicode=True, width=2**30))
    m = load_manifests([str(path)], keep_going=True)
    first_fuzzed = len(sc.good) + len(sc.support) + 1

    # every document lands in exactly one place: loaded, an error, a warning, or skipped
    named = {int(item) + 1 if item else int(d) for line in m.errors + m.warnings
             for d, item in re.findall(r"document (\d+)(?:\.items\[(\d+)\])?", line)}
    assert all(d >= first_fuzzed for d in named), (m.errors, m.warnings)   # good ones never rejected
    pods_left_out = sum("bound to node" in w for w in m.warnings)
    dups = sum("duplicate of" in w for w in m.warnings)
    loaded = sum(len(v) for v in m.objects.values()) + pods_left_out
    assert loaded + len(m.errors) + dups + len(m.skipped) == len(docs), (sc.notes, m.errors, m.warnings)

    report = simulate(m, default_config())
    format_table(report)
    assert json.loads(json.dumps(report))["invalid"] == m.errors
    bound = {b["pod"] for b in report["cycles"][0]["bindings"]}
    assert set(good_pod_keys()) <= bound, (sc.notes, report["cycles"][0]["unschedulable"])

    _RUNS[0] += 1
    if _RUNS[0] % 10 == 1:           # the CLI on every 10th example: exit code and one line per bad object
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["simulate", "--output", "json", str(path)])
        assert code == (2 if m.errors else 0), err.getvalue()
        assert err.getvalue().count("kai simulate: error: ") == len(m.errors)
        assert without_timings(json.loads(out.getvalue())["cycles"]) == without_timings(report["cycles"])


_RUNS = [0]
