"""kai's command line (kai/cli.py): ``kai simulate`` end to end (exit codes, messages, the JSON
report, cycles feeding back), and KAI's scheduler flags parsed as Go's flag package reads them,
landing on the scheduler config."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kai.api import constants as C
from kai.cli import apply_flags, build_parser, main
from kai.config import default_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLUSTER = """\
apiVersion: v1
kind: Node
metadata: {name: n0}
status: {allocatable: {cpu: '8', memory: 32Gi, pods: '10', nvidia.com/gpu: '4'}}
---
apiVersion: scheduling.run.ai/v2
kind: Queue
metadata: {name: q}
spec:
  resources:
    gpu: {quota: -1, limit: -1, overQuotaWeight: 1}
    cpu: {quota: -1, limit: -1, overQuotaWeight: 1}
    memory: {quota: -1, limit: -1, overQuotaWeight: 1}
---
apiVersion: scheduling.run.ai/v2alpha2
kind: PodGroup
metadata: {name: a, namespace: t}
spec: {minMember: 2, queue: q}
---
apiVersion: scheduling.run.ai/v2alpha2
kind: PodGroup
metadata: {name: b, namespace: t}
spec: {minMember: 1, queue: q}
"""


def pod(name, group, gpu):
    return f"""\
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: t, annotations: {{pod-group-name: {group}}}}}
spec:
  schedulerName: kai-scheduler
  containers: [{{name: c, resources: {{requests: {{cpu: '1', memory: 1Gi, nvidia.com/gpu: '{gpu}'}}}}}}]
"""


MANIFEST = CLUSTER + pod("a-0", "a", 2) + pod("a-1", "a", 2) + pod("b-0", "b", 4)


@pytest.fixture
def cluster(tmp_path):
    p = tmp_path / "cluster.yaml"
    p.write_text(MANIFEST)
    return str(p)


def run_json(capsys, *args):
    rc = main(["simulate", "--output", "json", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_json_schema(capsys, cluster):
    report = run_json(capsys, cluster)
    assert set(report) >= {"cycles", "queues"}
    (cyc,) = report["cycles"]
    assert set(cyc) >= {"bindings", "evictions", "pipelined", "unschedulable"}
    for b in cyc["bindings"]:
        assert set(b) >= {"pod", "node", "gpuGroups"}
        assert isinstance(b["gpuGroups"], list)
    assert sorted(b["pod"] for b in cyc["bindings"]) == ["t/a-0", "t/a-1"]
    assert all(b["node"] == "n0" for b in cyc["bindings"])
    assert cyc["evictions"] == [] and cyc["pipelined"] == []
    (u,) = cyc["unschedulable"]
    assert u["podGroup"] == "t/b" and isinstance(u["reasons"], list)
    assert "insufficient nvidia.com/gpu" in u["reasons"][0]
    q = {x["name"]: x for x in report["queues"]}["q"]
    for part in ("fairShare", "allocated"):
        assert set(q[part]) == {"gpu", "cpu", "memory"}
    assert q["allocated"] == {"gpu": 4, "cpu": 2000, "memory": 2 * 2**30}


def test_cycles_feed_back(capsys, cluster):
    report = run_json(capsys, "--cycles", "2", cluster)
    assert len(report["cycles"]) == 2
    assert len(report["cycles"][0]["bindings"]) == 2
    # the gang is running in cycle 2: nothing new fits, b stays pending, a is not bound twice
    assert report["cycles"][1]["bindings"] == []
    assert [u["podGroup"] for u in report["cycles"][1]["unschedulable"]] == ["t/b"]


def test_table_output(capsys, cluster):
    assert main(["simulate", cluster]) == 0
    out = capsys.readouterr().out
    assert "== cycle 1: 2 bound" in out and "t/a-0" in out and "pending   t/b" in out


def test_cycle_timings(capsys, cluster):
    """Each cycle reports its own duration (loading excluded) and each action's, in both outputs."""
    report = run_json(capsys, "--cycles", "2", cluster)
    for cyc in report["cycles"]:
        actions = cyc["actionSeconds"]
        assert list(actions) == ["allocate", "consolidation", "reclaim", "preempt", "stalegangeviction"]
        parts = cyc["openSeconds"] + sum(actions.values()) + cyc["closeSeconds"]
        assert all(v >= 0 for v in actions.values())
        # the whole is at least its parts, and no more than them plus the cycle's bookkeeping
        assert parts - 1e-5 <= cyc["durationSeconds"] <= parts + 0.5
    assert main(["simulate", cluster]) == 0
    took = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("took")]
    assert len(took) == 1 and " ms (open " in took[0] and "allocate " in took[0] and "close " in took[0]


def test_bundled_example_runs_with_no_arguments(capsys):
    assert main(["simulate"]) == 0
    out = capsys.readouterr().out
    assert "== cycle 1:" in out and "bind" in out


def test_config_file(capsys, cluster, tmp_path):
    cfg = tmp_path / "conf.yaml"
    cfg.write_text("actions: allocate\ntiers:\n- plugins:\n  - name: predicates\n  - name: proportion\n"
                   "  - name: nodeplacement\n    arguments: {gpu: spread}\n")
    report = run_json(capsys, "--config", str(cfg), cluster)
    assert len(report["cycles"][0]["bindings"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("actions: allocate, teleport\n")
    assert main(["simulate", "--config", str(bad), cluster]) == 2
    assert "unknown action 'teleport'" in capsys.readouterr().err


BAD = [
    ("bad.yaml", "kind: Node\nmetadata: {name: a\n", ["bad.yaml", "not valid YAML"]),
    ("unknown.yaml", "kind: Foo\nmetadata: {name: a}\n", ["unknown.yaml: document 1", "unknown kind 'Foo'"]),
    ("mm.yaml", "kind: PodGroup\nmetadata: {name: g}\nspec: {minMember: '2'}\n",
     ["mm.yaml: document 1 (PodGroup g)", "spec.minMember"]),
    ("neg.yaml", "kind: Node\nmetadata: {name: n}\nstatus: {allocatable: {cpu: '-2'}}\n",
     ["neg.yaml: document 1 (Node n)", "status.allocatable.cpu", "negative quantity"]),
    ("noname.yaml", "kind: Pod\nmetadata: {namespace: x}\n", ["noname.yaml: document 1", "metadata.name is required"]),
    ("shape.yaml", "kind: Pod\nmetadata: {name: p}\nspec: {containers: [7]}\n", ["spec.containers[0]"]),
]


@pytest.mark.parametrize("name, text, needles", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_message(capsys, tmp_path, name, text, needles):
    p = tmp_path / name
    p.write_text(text)
    assert main(["simulate", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kai simulate: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


def test_bad_file_in_directory_and_missing_file(capsys, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "x.yaml").write_text("kind: Node\nmetadata: {name: a}\nstatus: {allocatable: {cpu: lots}}\n")
    assert main(["simulate", str(d)]) == 2
    assert "x.yaml: document 1 (Node a): status.allocatable.cpu: invalid quantity 'lots'" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file or directory" in capsys.readouterr().err


def test_cycles_must_be_positive(capsys, cluster):
    assert main(["simulate", "--cycles", "0", cluster]) == 2
    assert "--cycles must be >= 1" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "simulate" in capsys.readouterr().out


def test_subprocess_python_m_kai(tmp_path, cluster):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "kai", "simulate", "--output", "json", cluster],
                        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["cycles"][0]["bindings"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: PodGroup\nmetadata: {name: g}\nspec: {minMember: '2'}\n")
    r = subprocess.run([sys.executable, "-m", "kai", "simulate", str(bad)],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "spec.minMember" in r.stderr and "bad.yaml" in r.stderr


def test_bad_objects_reported_and_the_rest_simulated(capsys, tmp_path):
    """The two tracebacks found by mutating the quickstart (issue 16), now clean errors."""
    bad = (MANIFEST.replace("metadata: {name: n0}", "metadata: {name: n0}", 1)
           + "---\nkind: Node\nmetadata: {name: n1, labels: {nvidia.com/gpu.memory: '1e309'}}\n"
           + "status: {allocatable: {nvidia.com/gpu: '8'}}\n"
           + "---\nkind: Queue\nmetadata: {name: nanq}\nspec: {resources: {gpu: {quota: 1, limit: -1, "
           + "overQuotaWeight: .nan}}}\n")
    p = tmp_path / "bad.yaml"
    p.write_text(bad)
    assert main(["simulate", "--output", "json", str(p)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "(Node n1): metadata.labels[nvidia.com/gpu.memory]: '1e309'" in err
    report = json.loads(out)
    assert len(report["invalid"]) == 1 and "Node n1" in report["invalid"][0]
    assert {"object": "Queue nanq", "reason": "spec.resources.gpu.overQuotaWeight is nan: must be a number "
            "within +-1e+09"} in report["problems"]
    assert len(report["cycles"][0]["bindings"]) == 2          # the good objects still scheduled


def test_warnings_in_table_and_json(capsys, tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text(MANIFEST + pod("b-0", "b", 1) + pod("x-0", "b", 1).replace("schedulerName: kai-scheduler",
                                                                             "schedulerName: kai-scheduler\n  nodeName: nowhere"))
    assert main(["simulate", str(p)]) == 0
    table = capsys.readouterr().out
    assert "warning   " in table and "duplicate of" in table and "bound to node 'nowhere'" in table
    assert main(["simulate", "--output", "json", str(p)]) == 0
    warnings = [w for w in json.loads(capsys.readouterr().out)["warnings"] if not w.startswith("scheduler config")]
    assert len(warnings) == 2 and "(Pod t/b-0): duplicate of" in warnings[0]


def test_json_report_lists_unimplemented_config_plugins_as_warnings(tmp_path, capsys):
    from kai.cli import main
    conf = tmp_path / "c.yaml"
    conf.write_text('actions: "allocate"\ntiers:\n- plugins:\n  - name: predicates\n  - name: snapshot\n')
    assert main(["simulate", "--config", str(conf), "--output", "json"]) == 0
    import json
    report = json.loads(capsys.readouterr().out)
    assert report["warnings"] == ["scheduler config plugin 'snapshot' is not implemented by kai: "
                                  "the snapshot debug endpoint is not served"]


# ------------------------------------------------------------------ clock, warnings
STALE = """\
apiVersion: v1
kind: Node
metadata: {name: n0}
status: {allocatable: {cpu: '8', memory: 32Gi, pods: '10', nvidia.com/gpu: '4'}}
---
apiVersion: scheduling.run.ai/v2
kind: Queue
metadata: {name: q}
spec:
  resources:
    gpu: {quota: -1, limit: -1, overQuotaWeight: 1}
    cpu: {quota: -1, limit: -1, overQuotaWeight: 1}
    memory: {quota: -1, limit: -1, overQuotaWeight: 1}
---
apiVersion: scheduling.run.ai/v2alpha2
kind: PodGroup
metadata:
  name: g
  namespace: t
  creationTimestamp: "2026-03-01T11:00:00Z"
  annotations: {kai.scheduler/stale-podgroup-timestamp: "2026-03-01T11:59:30Z"}
spec: {minMember: 2, queue: q}
---
apiVersion: v1
kind: Pod
metadata: {name: g-0, namespace: t, creationTimestamp: "2026-03-01T11:00:00Z", annotations: {pod-group-name: g}}
spec:
  schedulerName: kai-scheduler
  nodeName: n0
  containers: [{name: c, resources: {requests: {cpu: '1', memory: 1Gi, nvidia.com/gpu: '1'}}}]
status: {phase: Running}
"""


@pytest.mark.parametrize("now, evicted", [("2026-03-01T12:00:00Z", False),      # stale for 30s
                                          ("2026-03-01T12:01:00Z", True),       # stale for 90s > 60s
                                          ("2026-03-01T14:01:00+02:00", True)])  # the same instant
def test_now_sets_the_clock_ages_are_measured_against(capsys, tmp_path, now, evicted):
    p = tmp_path / "stale.yaml"
    p.write_text(STALE)
    report = run_json(capsys, "--now", now, str(p))
    assert report["clock"]["source"] == "--now"
    assert bool(report["cycles"][0]["evictions"]) is evicted


def test_clock_defaults_to_the_current_time(capsys, tmp_path):
    """A dump of a live cluster replays with today's ages: a gang stale since a minute ago
    (by the wall clock) is past KAI's 60 s grace, one stale since now is not."""
    import datetime as dt
    stamp = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    p = tmp_path / "live.yaml"
    p.write_text(STALE.replace("2026-03-01T11:59:30Z", stamp))
    report = run_json(capsys, str(p))
    assert report["clock"]["source"] == "current time"
    started = dt.datetime.fromisoformat(report["clock"]["start"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - started).total_seconds()) < 120
    assert [e["pod"] for e in report["cycles"][0]["evictions"]] == ["t/g-0"]
    assert main(["simulate", str(p)]) == 0
    assert "== clock: " in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["yesterday", "2026-03-01", "2026-03-01T12:00:00", "2026-13-01T00:00:00Z"])
def test_now_must_be_rfc3339(capsys, cluster, bad):
    assert main(["simulate", "--now", bad, cluster]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kai simulate: error: --now:") and "Traceback" not in err


FOREIGN = """\
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: t}
spec: {rules: [{host: example.com}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: t}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: tls, namespace: t}
spec: {secretName: tls}
"""


def test_foreign_kinds_are_skipped_and_counted_in_warnings(capsys, tmp_path):
    p = tmp_path / "dump.yaml"
    p.write_text(MANIFEST + FOREIGN)
    report = run_json(capsys, str(p))
    assert len(report["cycles"][0]["bindings"]) == 2            # scheduled as without them
    skipped = [w for w in report["warnings"] if w.startswith("skipped ")]
    assert skipped == [
        "skipped 1 Certificate object(s) (cert-manager.io/v1): kai does not read this kind",
        "skipped 2 Ingress object(s) (networking.k8s.io/v1): kai does not read this kind"]
    assert main(["simulate", str(p)]) == 0
    out = capsys.readouterr().out
    assert "  warning   skipped 1 Certificate" in out


@pytest.mark.parametrize("text, needle", [
    ("apiVersion: scheduling.run.ai/v2\nkind: Queeu\nmetadata: {name: q}\n", "unknown kind 'Queeu'"),
    ("kind: Ingress\nmetadata: {name: x}\n", "unknown kind 'Ingress'"),
    (FOREIGN + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, "
     "resources: {requests: {cpu: lots}}}]}\n", "document 4 (Pod p): spec.containers[0].resources.requests.cpu"),
])
def test_kai_kinds_and_malformed_objects_still_exit_2(capsys, tmp_path, text, needle):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    assert main(["simulate", str(p)]) == 2
    assert needle in capsys.readouterr().err


# ---------------------------------------------------------------- KAI's scheduler flags

def _config(*argv: str):
    args = build_parser().parse_args(["simulate", *argv])
    return apply_flags(default_config(), args)


def test_defaults_are_kais():
    cfg = _config()
    assert cfg.full_hierarchy_fairness is True and cfg.use_scheduling_signatures is True
    assert cfg.restrict_node_scheduling is False and cfg.detailed_fit_errors is False
    assert (cfg.cpu_worker_node_label_key, cfg.gpu_worker_node_label_key, cfg.mig_worker_node_label_key) == (
        C.CPU_WORKER_LABEL, C.GPU_WORKER_LABEL, C.MIG_ENABLED_LABEL)
    r = build_parser().parse_args(["scheduler"])
    assert (r.qps, r.burst, r.enable_profiler, r.profiler_port) == (50.0, 300, False, 8182)


@pytest.mark.parametrize("argv,want", [
    (["--restrict-node-scheduling"], True),                 # a bare Go bool flag
    (["--restrict-node-scheduling=true"], True),
    (["--restrict-node-scheduling", "false"], False),
    (["--restrict-node-scheduling=0"], False),
])
def test_go_style_booleans(argv, want):
    assert _config(*argv).restrict_node_scheduling is want


def test_flags_reach_the_config():
    cfg = _config("--full-hierarchy-fairness=false", "--use-scheduling-signatures=false", "--detailed-fit-errors",
                  "--gpu-worker-node-label-key", "example.com/gpu", "--cpu-worker-node-label-key=example.com/cpu",
                  "--mig-worker-node-label-key", "example.com/mig")
    assert not cfg.full_hierarchy_fairness and not cfg.use_scheduling_signatures and cfg.detailed_fit_errors
    assert (cfg.cpu_worker_node_label_key, cfg.gpu_worker_node_label_key, cfg.mig_worker_node_label_key) == (
        "example.com/cpu", "example.com/gpu", "example.com/mig")


def test_profiler_port_as_kai_writes_it():
    assert build_parser().parse_args(["scheduler", "--profiler-port", ":9000"]).profiler_port == 9000


@pytest.mark.parametrize("argv,needle", [
    (["simulate", "--detailed-fit-errors=maybe"], "expected true or false"),
    (["scheduler", "--profiler-port", "70000"], "out of range"),
])
def test_bad_values_are_clear_errors(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_bad_label_key_names_the_flag(capsys):
    from kai.cli import main
    assert main(["simulate", "--gpu-worker-node-label-key", "not a key"]) == 2
    assert "--gpu-worker-node-label-key" in capsys.readouterr().err
