"""GPU sharing (gpupack, gpuspread, gpusharingorder and the allocator) through ``kai.sim``.

Scenario tables: nodes, queues and jobs in; bindings with their GPU groups, pipelined pods
and reasons out. Then properties over random clusters: a fraction never spans devices, and
no device ever holds more than one whole GPU of fractions.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actions"))
from scenario_builder import config, flatten, job, node, pod, queue, simulate_docs, unschedulable  # noqa: E402

from kai.api.resources import GPU  # noqa: E402
from kai.config import PluginConf  # noqa: E402
from kai.scheduler import RecordingCache, Scheduler  # noqa: E402
from kai.sim.loader import Manifests  # noqa: E402
from kai.sim.simulator import build_state  # noqa: E402

MEM = {"nvidia.com/gpu.memory": "40000"}


def frac(name, f, *, queue_="q", pods=1, devices=None, running_on=(), group_label=None, deleting=False,
         memory_mib=None, extra_ann=None, gpu=0):
    ann = {"gpu-memory": str(memory_mib)} if memory_mib else {"gpu-fraction": str(f)}
    if devices:
        ann["gpu-fraction-num-devices"] = str(devices)
    ann.update(extra_ann or {})
    labels = {"runai-gpu-group": group_label} if group_label else None
    return job(name, queue=queue_, pods=pods, running_on=running_on, annotations=ann, labels=labels,
               deleting=deleting, gpu=gpu)


def cfg(gpu_order="gpupack", placement="binpack", actions=("allocate",)):
    c = config(gpu=placement, actions=list(actions))
    names = [p.name for p in c.plugins]
    if gpu_order != "gpupack":
        i = names.index("gpupack")
        if gpu_order:
            c.plugins[i] = PluginConf(gpu_order, {})
        else:
            del c.plugins[i]
    return c


def run(docs, c=None):
    rep = simulate_docs(docs, c or cfg())
    cyc = rep["cycles"][0]
    bound = {b["pod"]: (b["node"], b["gpuGroups"]) for b in cyc["bindings"]}
    return rep, bound, set(cyc["pipelined"]), unschedulable(rep)


def groups_of(rep, name):
    for b in rep["cycles"][0]["bindings"]:
        if b["pod"] == name:
            return b["gpuGroups"]
    raise KeyError(name)


# --------------------------------------------------------------------------- scenario table
SCENARIOS = [
    dict(id="two-halves-share-one-device",
         docs=[node("n0", gpu=2), queue("q"), frac("a", 0.5), frac("b", 0.5)],
         bound={"default/a-0": "n0", "default/b-0": "n0"}, same_group=[("default/a-0", "default/b-0")]),
    dict(id="halves-that-do-not-fit-together-take-two-devices",
         docs=[node("n0", gpu=2), queue("q"), frac("a", 0.6), frac("b", 0.6)],
         bound={"default/a-0": "n0", "default/b-0": "n0"}, other_group=[("default/a-0", "default/b-0")]),
    dict(id="gpupack-prefers-the-fuller-group",
         docs=[node("n0", gpu=3), queue("q"),
               frac("r1", 0.5, running_on=["n0"], group_label="g-full"),
               frac("r2", 0.25, running_on=["n0"], group_label="g-light"), frac("new", 0.25)],
         bound={"default/new-0": "n0"}, groups={"default/new-0": ["g-full"]}),
    dict(id="gpuspread-prefers-a-whole-device",
         docs=[node("n0", gpu=3), queue("q"),
               frac("r1", 0.5, running_on=["n0"], group_label="g-full"),
               frac("r2", 0.25, running_on=["n0"], group_label="g-light"), frac("new", 0.25)],
         cfg=cfg("gpuspread"), bound={"default/new-0": "n0"}, new_group=["default/new-0"]),
    dict(id="gpuspread-prefers-the-emptier-group-when-no-device-is-free",
         docs=[node("n0", gpu=2), queue("q"),
               frac("r1", 0.5, running_on=["n0"], group_label="g-full"),
               frac("r2", 0.25, running_on=["n0"], group_label="g-light"), frac("new", 0.25)],
         cfg=cfg("gpuspread"), bound={"default/new-0": "n0"}, groups={"default/new-0": ["g-light"]}),
    dict(id="gpusharingorder-beats-spread-node-order",
         docs=[node("a", gpu=4), node("b", gpu=4), queue("q"),
               frac("r", 0.5, running_on=["a"], group_label="g0"), frac("new", 0.5)],
         cfg=cfg(placement="spread"), bound={"default/new-0": "a"}, groups={"default/new-0": ["g0"]}),
    dict(id="without-gpusharingorder-spread-picks-the-empty-node",
         docs=[node("a", gpu=4), node("b", gpu=4), queue("q"),
               frac("r", 0.5, running_on=["a"], group_label="g0"), frac("new", 0.5)],
         cfg=cfg(placement="spread"), drop="gpusharingorder", bound={"default/new-0": "b"}),
    dict(id="gpu-memory-uses-the-labelled-node",
         docs=[node("a", gpu=1), node("b", gpu=1, labels=MEM), queue("q"),
               frac("m", None, memory_mib=10000), frac("m2", None, memory_mib=30000)],
         bound={"default/m-0": "b", "default/m2-0": "b"}, same_group=[("default/m-0", "default/m2-0")]),
    dict(id="gpu-memory-without-label-is-rejected",
         docs=[node("a", gpu=1), queue("q"), frac("m", None, memory_mib=10000)],
         bound={}, reasons={"default/m": ["nvidia.com/gpu.memory", "gpu-memory"]}),
    dict(id="gpu-memory-larger-than-the-device",
         docs=[node("b", gpu=1, labels=MEM), queue("q"), frac("m", None, memory_mib=50000)],
         bound={}, reasons={"default/m": ["less than 50000 MiB"]}),
    dict(id="multi-fraction-takes-distinct-devices",
         docs=[node("n0", gpu=4), queue("q"), frac("mf", 0.5, devices=3)],
         bound={"default/mf-0": "n0"}, n_groups={"default/mf-0": 3}),
    dict(id="multi-fractions-pack-onto-the-same-groups",
         docs=[node("n0", gpu=4), queue("q"), frac("a", 0.5, devices=2), frac("b", 0.5, devices=2)],
         bound={"default/a-0": "n0", "default/b-0": "n0"}, same_groups=[("default/a-0", "default/b-0")]),
    dict(id="multi-fraction-needs-enough-devices-on-one-node",
         docs=[node("n0", gpu=2), node("n1", gpu=2), queue("q"), frac("mf", 0.5, devices=3)],
         bound={}, reasons={"default/mf": ["without 3 GPU device(s) with room"]}),
    dict(id="a-fraction-never-spans-devices",
         docs=[node("n0", gpu=2), queue("q"), frac("a", 0.7, running_on=["n0"], group_label="g0"),
               frac("b", 0.7, running_on=["n0"], group_label="g1"), frac("c", 0.6)],
         bound={}, reasons={"default/c": ["without a GPU device with room"]}),
    dict(id="whole-gpu-pod-cannot-use-a-shared-device",
         docs=[node("n0", gpu=1), queue("q"), frac("r", 0.1, running_on=["n0"], group_label="g0"),
               job("w", gpu=1)],
         bound={}, reasons={"default/w": ["insufficient nvidia.com/gpu"]}),
    dict(id="pipelined-onto-a-releasing-shared-group",
         docs=[node("n0", gpu=1), queue("q"),
               frac("keep", 0.5, running_on=["n0"], group_label="g0"),
               frac("gone", 0.5, running_on=["n0"], group_label="g0", deleting=True), frac("new", 0.5)],
         bound={}, pipelined={"default/new-0"}),
    dict(id="pipelined-onto-a-releasing-whole-device",
         docs=[node("n0", gpu=1), queue("q"), job("gone", gpu=1, running_on=["n0"], deleting=True),
               frac("new", 0.5)],
         bound={}, pipelined={"default/new-0"}),
    dict(id="fraction-on-a-mig-node-is-rejected",
         docs=[node("n0", gpu=2, labels={"nvidia.com/mig.strategy": "single"}), queue("q"), frac("a", 0.5)],
         bound={}, reasons={"default/a": ["MIG node"]}),
    dict(id="invalid-fraction-with-whole-gpu",
         docs=[node("n0", gpu=2), queue("q"), frac("a", 0.5, gpu=1)],
         bound={}, reasons={"default/a": ["cannot have both GPU fraction request and whole GPU resource"]}),
    dict(id="invalid-fraction-out-of-range",
         docs=[node("n0", gpu=2), queue("q"), frac("a", 1.5)],
         bound={}, reasons={"default/a": ["gpu-fraction annotation value must be a positive number smaller than 1.0"]}),
    dict(id="invalid-fraction-and-memory-together",
         docs=[node("n0", gpu=2), queue("q"), frac("a", 0.5, extra_ann={"gpu-memory": "100"})],
         bound={}, reasons={"default/a": ["cannot request both gpu-fraction and GPU memory"]}),
    dict(id="invalid-num-devices-alone",
         docs=[node("n0", gpu=2), queue("q"), job("a", annotations={"gpu-fraction-num-devices": "2"})],
         bound={}, reasons={"default/a": ["cannot request multiple fractional devices without specifying fraction details"]}),
    dict(id="queue-limit-counts-portion-times-devices",
         docs=[node("n0", gpu=4), queue("q", gpu=(-1, 1)), frac("a", 0.4, devices=2), frac("b", 0.4, devices=2)],
         bound={"default/a-0": "n0"}, reasons={"default/b": ["OverLimit"]}),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[c["id"] for c in SCENARIOS])
def test_gpu_sharing_scenario(case):
    c = case.get("cfg") or cfg()
    if case.get("drop"):
        c.plugins = [p for p in c.plugins if p.name != case["drop"]]
    rep, bound, pipelined, reasons = run(case["docs"], c)
    assert {k: v[0] for k, v in bound.items()} == case["bound"], reasons
    assert pipelined == case.get("pipelined", set())
    for a, b in case.get("same_group", []):
        assert bound[a][1] == bound[b][1] and len(bound[a][1]) == 1
    for a, b in case.get("same_groups", []):
        assert sorted(bound[a][1]) == sorted(bound[b][1])
    for a, b in case.get("other_group", []):
        assert bound[a][1] != bound[b][1]
    for p, want in case.get("groups", {}).items():
        assert bound[p][1] == want
    for p in case.get("new_group", []):
        assert len(bound[p][1]) == 1 and bound[p][1][0].startswith(bound[p][0] + "-gpu")
    for p, n in case.get("n_groups", {}).items():
        assert len(bound[p][1]) == n and len(set(bound[p][1])) == n
    for key, parts in case.get("reasons", {}).items():
        for part in parts:
            assert part in reasons.get(key, ""), reasons
    for p, (_, groups) in bound.items():
        assert groups, f"{p} bound without GPU groups"


def test_group_ids_are_deterministic_and_reported_by_simulate():
    docs = [node("n0", gpu=2), queue("q"), frac("a", 0.5), frac("b", 0.3, devices=2)]
    first = simulate_docs(docs, cfg())["cycles"][0]["bindings"]
    second = simulate_docs(docs, cfg())["cycles"][0]["bindings"]
    assert first == second
    assert all(b["gpuGroups"] for b in first)
    assert all(g.startswith("n0-gpu") for b in first for g in b["gpuGroups"])


@pytest.mark.parametrize("devices", [3, 2**31, 2**63])
def test_more_devices_than_any_node_has_waits_with_a_reason(devices):
    """gpu-fraction-num-devices is any positive integer: one larger than every node's device
    count leaves the pod pending with the count in the reason (found by the simulate fuzzer:
    2**63 used to size the kernel's device buffer)."""
    rep, bound, pipelined, unsched = run([node("n0", gpu=2), queue("q"), frac("a", 0.5, devices=devices)])
    assert not bound and not pipelined
    (reason,) = unsched.values()
    assert f"without {devices} GPU device(s)" in reason


def test_bound_fractions_stay_in_their_groups_next_cycle():
    """Cycle 1 binds two halves to one group; cycle 2 sees that group full and opens a new one."""
    docs = [node("n0", gpu=2), queue("q"), frac("a", 0.5), frac("b", 0.5)]
    rep = simulate_docs(docs, cfg(), cycles=1)
    g = {b["pod"]: b["gpuGroups"] for b in rep["cycles"][0]["bindings"]}
    assert g["default/a-0"] == g["default/b-0"]
    m = Manifests()
    from scenario_builder import yaml  # noqa: F401  (same loader path as kai simulate)
    import msgspec
    from kai.api.k8s import KINDS
    for d in flatten(docs + [frac("c", 0.5)]):
        m.objects[d["kind"]].append(msgspec.convert(d, KINDS[d["kind"]]))
    state = build_state(m)
    sched = Scheduler(state, cfg())
    r1 = sched.run_cycle(RecordingCache(state), now=0.0)
    groups = {d.pod: d.gpu_groups for d in r1.bindings}
    assert len({tuple(v) for v in groups.values()}) == 2          # a+b share, c opens a second device
    t = state.nodes
    assert t.idle[GPU, t.by_name["n0"].idx] == 0


def test_reclaim_frees_a_shared_device_for_a_whole_gpu():
    docs = [node("n0", gpu=1), queue("q0", gpu=(0, -1)), queue("q1", gpu=(1, -1)),
            frac("low", 0.5, queue_="q0", running_on=["n0"]), job("high", queue="q1", gpu=1)]
    rep = simulate_docs(docs, cfg(actions=("allocate", "reclaim")))
    cyc = rep["cycles"][0]
    assert [e["pod"] for e in cyc["evictions"]] == ["default/low-0"]
    assert cyc["pipelined"] == ["default/high-0"]


# --------------------------------------------------------------------------- properties
@st.composite
def clusters(draw):
    n_nodes = draw(st.integers(1, 4))
    docs = [queue("q")]
    for i in range(n_nodes):
        labels = MEM if draw(st.booleans()) else None
        docs.append(node(f"n{i}", gpu=draw(st.integers(1, 4)), labels=labels))
    n_run = draw(st.integers(0, 6))
    for k in range(n_run):
        f = draw(st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.7]))
        docs.append(frac(f"r{k}", f, running_on=[f"n{draw(st.integers(0, n_nodes - 1))}"],
                         deleting=draw(st.booleans())))
    for k in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["f", "m", "mf"]))
        if kind == "f":
            docs.append(frac(f"p{k}", draw(st.sampled_from([0.1, 0.2, 0.5, 0.6, 0.9]))))
        elif kind == "m":
            docs.append(frac(f"p{k}", None, memory_mib=draw(st.sampled_from([4000, 20000, 39000]))))
        else:
            docs.append(frac(f"p{k}", draw(st.sampled_from([0.25, 0.5])), devices=draw(st.integers(2, 3))))
    order = draw(st.sampled_from(["gpupack", "gpuspread", ""]))
    return docs, order


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_devices_never_over_one_and_fractions_never_span(problem):
    import msgspec
    from kai.api.k8s import KINDS
    docs, order = problem
    m = Manifests()
    for d in flatten(docs):
        m.objects[d["kind"]].append(msgspec.convert(d, KINDS[d["kind"]]))
    state = build_state(m)
    sched = Scheduler(state, cfg(order, actions=("allocate",)))
    before_idle = state.nodes.idle.copy()
    result = sched.run_cycle(RecordingCache(state), now=0.0)
    t = state.nodes
    assert (t.dev_alloc <= 1.0 + 1e-6).all() or not result.bindings and (before_idle == t.idle).all()
    for d in result.bindings:
        p = next(p for p in state.pods.values() if p.key == d.pod)
        gs = p.gpu_sharing
        assert len(d.gpu_groups) == gs.num_devices == len(set(d.gpu_groups))
    # whole devices: groups + idle never exceed the node's GPUs
    for info in t.nodes():
        i = info.idx
        groups = int((t.dev_used[i] > 1e-9).sum())
        assert t.idle[GPU, i] >= -1e-9 or groups > t.allocatable[GPU, i]
        assert groups + t.idle[GPU, i] <= t.allocatable[GPU, i] + 1e-9


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_statement_discard_restores_every_array(problem):
    import msgspec
    from kai.actions.allocate import allocate_job
    from kai.api.k8s import KINDS
    from kai.framework.statement import Statement
    docs, order = problem
    m = Manifests()
    for d in flatten(docs):
        m.objects[d["kind"]].append(msgspec.convert(d, KINDS[d["kind"]]))
    state = build_state(m)
    sched = Scheduler(state, cfg(order, actions=("allocate",)))
    ssn = sched.open_session(RecordingCache(state), 0.0)
    try:
        arrays = ("idle", "releasing", "avail", "dev_used", "dev_alloc", "dev_rel", "dev_from_rel")
        snap = {a: getattr(ssn, a).copy() for a in arrays}
        names = {i: dict(v) for i, v in ssn.group_names.items()}
        stmt = Statement(ssn)
        for job_ in ssn.jobs.values():
            if job_.has_pending() and not job_.invalid_reasons:
                allocate_job(ssn, job_, stmt)
        for job_ in ssn.jobs.values():          # evict what runs, too
            for t in job_.tasks.values():
                if t.node_name and t.status & 64:
                    stmt.evict(t, "test")
        stmt.discard()
        for a in arrays:
            np.testing.assert_array_equal(getattr(ssn, a), snap[a], err_msg=a)
        assert {i: v for i, v in ssn.group_names.items() if v} == {i: v for i, v in names.items() if v}
    finally:
        ssn.close()


def _state(docs):
    import msgspec
    from kai.api.k8s import KINDS
    m = Manifests()
    for d in flatten(docs):
        m.objects[d["kind"]].append(msgspec.convert(d, KINDS[d["kind"]]))
    return build_state(m)


def test_simulated_binder_labels_keep_groups_across_cycles():
    """Bound fraction pods come back labelled with their groups, so the next cycle charges the
    same groups instead of re-packing them (0.5 and 0.3 on two devices stay on two devices)."""
    from kai.sim.simulator import _advance
    state = _state([node("n0", gpu=2), queue("q"), frac("a", 0.5), frac("b", 0.3)])
    sched = Scheduler(state, cfg("gpuspread"))
    r1 = sched.run_cycle(RecordingCache(state), now=0.0)
    groups = {d.pod: d.gpu_groups for d in r1.bindings}
    assert groups["default/a-0"] != groups["default/b-0"]
    _advance(state, r1)
    t = state.nodes
    i = t.by_name["n0"].idx
    assert t.idle[GPU, i] == 0
    assert sorted(t.group_names[i].values()) == sorted(g for v in groups.values() for g in v)
    pods = {p.key: p for p in state.pods.values()}
    assert pods["default/a-0"].pod.metadata.labels["runai-gpu-group"] == groups["default/a-0"][0]


def test_group_ids_are_valid_label_values_for_long_node_names():
    import re
    name = "very-long-node-name." + "x" * 60 + ".compute.internal"
    rep = simulate_docs([node(name, gpu=1), queue("q"), frac("a", 0.5, devices=1)], cfg())
    (gid,) = rep["cycles"][0]["bindings"][0]["gpuGroups"]
    assert len(gid) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", gid)


# --------------------------------------------------------------------------- KAI's own cases
# allocateFractionalGpu_test.go (TestHandleFractionalGPUAllocation), in the scenario runner's
# format (tests/scenarios/README.md); GPU group ids are not compared (the runner does not).
def _j(name, gpus, prio, *tasks, queue_="queue0"):
    return {"name": name, "queue": queue_, "priority": prio, "requiredGPUsPerTask": gpus,
            "tasks": list(tasks) or [{"state": "Pending"}]}


def _run(node_, groups=None, state="Running"):
    t = {"state": state, "nodeName": node_}
    if groups:
        t["gpuGroups"] = groups
    return t


BUILD, TRAIN = 100, 50
KAI_FRACTION_CASES = [
    {"name": "project-over-allowance", "actions": "allocate", "nodes": {"node0": {"gpus": 4}},
     "departments": [{"name": "department-a", "deservedGPUs": 1, "maxAllowedGPUs": 1}],
     "queues": [{"name": "queue0", "parentQueue": "department-a", "deservedGPUs": 1, "gpuOverQuotaWeight": 1,
                 "maxAllowedGPUs": 1}],
     "jobs": [_j("pending_job0", 0.5, TRAIN, {"state": "Pending"}, {"state": "Pending"}, {"state": "Pending"})],
     "expected": {"jobs": {"pending_job0": {"status": "Pending", "gpusRequired": 1.5}}, "counts": {"binds": 2}}},
    {"name": "department-over-allowance", "actions": "allocate", "nodes": {"node0": {"gpus": 4}},
     "departments": [{"name": "department-a", "deservedGPUs": 1, "maxAllowedGPUs": 1}],
     "queues": [{"name": "queue0", "parentQueue": "department-a", "deservedGPUs": 1, "gpuOverQuotaWeight": 1}],
     "jobs": [_j("pending_job0", 0.5, TRAIN, {"state": "Pending"}, {"state": "Pending"}, {"state": "Pending"})],
     "expected": {"jobs": {"pending_job0": {"status": "Pending", "gpusRequired": 1.5}}, "counts": {"binds": 2}}},
    {"name": "same-gpu", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_shared_gpu_job0", 0.5, BUILD, _run("node0", ["1"])),
              _j("pending_shared_gpu_job1", 0.5, BUILD)],
     "expected": {"jobs": {"running_shared_gpu_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_shared_gpu_job1": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.5}},
                  "nodes": {"node0": {"idleGPUs": 1}}, "counts": {"binds": 5}}},
    {"name": "same-gpu-other-node-gpusharingorder", "actions": "allocate",
     "nodes": {"node0": {"gpus": 2}, "node1": {"gpus": 2}}, "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_shared_gpu_job0", 0.5, BUILD, _run("node1", ["1"])),
              _j("pending_shared_gpu_job1", 0.5, BUILD)],
     "expected": {"jobs": {"pending_shared_gpu_job1": {"status": "Binding", "nodeName": "node1", "gpusRequired": 0.5},
                           "running_shared_gpu_job0": {"status": "Running", "nodeName": "node1", "gpusRequired": 0.5}},
                  "nodes": {"node0": {"idleGPUs": 2}, "node1": {"idleGPUs": 1}}, "counts": {"binds": 5}}},
    {"name": "new-gpu", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_shared_gpu_job0", 0.6, BUILD, _run("node0", ["0"])),
              _j("pending_shared_gpu_job1", 0.5, BUILD)],
     "expected": {"jobs": {"running_shared_gpu_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.6},
                           "pending_shared_gpu_job1": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.5}},
                  "nodes": {"node0": {"idleGPUs": 0}}, "counts": {"binds": 5}}},
    {"name": "queue-overused-non-preemptible", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 1}],
     "jobs": [_j("running_shared_gpu_job0", 0.6, BUILD, _run("node0", ["0"])),
              _j("pending_shared_gpu_job1", 0.5, BUILD)],
     "expected": {"jobs": {"running_shared_gpu_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.6},
                           "pending_shared_gpu_job1": {"status": "Pending", "gpusRequired": 0.5}},
                  "counts": {"binds": 5}}},
    {"name": "whole-running-fraction-pending", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_job0", 1, TRAIN, _run("node0")), _j("pending_shared_gpu_job1", 0.5, BUILD)],
     "expected": {"jobs": {"running_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 1},
                           "pending_shared_gpu_job1": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.5}},
                  "counts": {"binds": 5}}},
    {"name": "fraction-running-whole-pending", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_shared_gpu_job0", 0.5, BUILD, _run("node0", ["1"])), _j("pending_whole_gpu_job1", 1, TRAIN)],
     "expected": {"jobs": {"running_shared_gpu_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_whole_gpu_job1": {"status": "Binding", "nodeName": "node0", "gpusRequired": 1}},
                  "nodes": {"node0": {"idleGPUs": 0}}, "counts": {"binds": 5}}},
    {"name": "four-pending-three-fit", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_shared_gpu_job0", 0.5, BUILD, _run("node0", ["0"])),
              _j("pending_shared_gpu_job0", 0.6, BUILD), _j("pending_shared_gpu_job1", 0.5, BUILD),
              _j("pending_shared_gpu_job2", 0.5, BUILD), _j("pending_shared_gpu_job3", 0.3, BUILD)],
     "expected": {"jobs": {"pending_shared_gpu_job0": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.6},
                           "pending_shared_gpu_job1": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_shared_gpu_job2": {"status": "Pending", "gpusRequired": 0.5},
                           "pending_shared_gpu_job3": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.3},
                           "running_shared_gpu_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5}},
                  "counts": {"binds": 5}}},
    {"name": "fractions-count-in-department", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_job0", 0.5, BUILD, _run("node0", ["1"])), _j("pending_job0", 1, BUILD)],
     "expected": {"jobs": {"running_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_job0": {"status": "Binding", "nodeName": "node0", "gpusRequired": 1}},
                  "counts": {"binds": 1}}},
    {"name": "pipeline-onto-evicting-group", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_job0", 0.5, BUILD, _run("node0", ["0"])),
              dict(_j("releasing_job0", 0.5, BUILD, _run("node0", ["0"], "Releasing")), deleteJobInTest=True),
              _j("pending_job0", 0.5, BUILD)],
     "expected": {"jobs": {"running_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "releasing_job0": {"status": "Releasing", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_job0": {"status": "Pipelined", "nodeName": "node0", "gpusRequired": 0.5}},
                  "counts": {"pipelines": 1}}},
    {"name": "fraction-training-over-quota", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 1}],
     "jobs": [_j("running_job0", 0.5, BUILD, _run("node0", ["0"])), _j("running_job1", 0.5, BUILD, _run("node0", ["0"])),
              _j("pending_job0", 0.5, TRAIN)],
     "expected": {"jobs": {"running_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "running_job1": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_job0": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.5}},
                  "nodes": {"node0": {"idleGPUs": 0}}, "counts": {"binds": 5}}},
    {"name": "fraction-training-over-quota-whole-running", "actions": "allocate", "nodes": {"node0": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 1}],
     "jobs": [_j("running_job0", 1, BUILD, _run("node0")), _j("pending_job0", 0.5, TRAIN)],
     "expected": {"jobs": {"running_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 1},
                           "pending_job0": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.5}},
                  "counts": {"binds": 5}}},
    {"name": "spread-across-nodes-with-a-shared-gpu", "actions": "allocate",
     "schedulerConf": {"actions": "allocate", "tiers": [{"plugins": [
         {"name": "nodeplacement", "arguments": {"gpu": "spread", "cpu": "spread"}}, {"name": "gpuspread"},
         {"name": "proportion"}, {"name": "priority"}, {"name": "nodeavailability"}, {"name": "resourcetype"}]}]},
     "nodes": {"node0": {"gpus": 2}, "node1": {"gpus": 2}}, "queues": [{"name": "queue0", "deservedGPUs": 2}],
     "jobs": [_j("running_job0", 0.5, TRAIN, _run("node0", ["0"])), _j("pending_job0", 0.2, TRAIN)],
     "expected": {"jobs": {"running_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_job0": {"status": "Binding", "nodeName": "node1", "gpusRequired": 0.2}},
                  "counts": {"binds": 1}}},
    {"name": "pack-jobs-on-nodes", "actions": "allocate", "nodes": {"node0": {"gpus": 2}, "node1": {"gpus": 2}},
     "queues": [{"name": "queue0", "deservedGPUs": 4}],
     "jobs": [_j("running_job0", 0.5, TRAIN, _run("node0", ["0"])), _j("pending_job0", 0.2, TRAIN)],
     "expected": {"jobs": {"running_job0": {"status": "Running", "nodeName": "node0", "gpusRequired": 0.5},
                           "pending_job0": {"status": "Binding", "nodeName": "node0", "gpusRequired": 0.2}},
                  "nodes": {"node0": {"idleGPUs": 1}, "node1": {"idleGPUs": 2}}, "counts": {"binds": 1}}},
]


@pytest.mark.parametrize("case", KAI_FRACTION_CASES, ids=[c["name"] for c in KAI_FRACTION_CASES])
def test_kai_fractional_gpu_allocation_case(case):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios"))
    import runner
    case = dict(case, source="allocateFractionalGpu_test.go", tags=["gpu-sharing"])
    assert runner.skip_reason(case) is None
    out = runner.run_case(case)
    errs = runner.compare(case, out)
    assert not errs, "\n".join(errs) + "\n" + runner.describe(out)
