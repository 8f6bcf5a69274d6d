"""kai.actions.allocate through ``kai.sim``: a declarative scenario table plus random properties."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenario_builder import bindings, config, job, node, pod, queue, simulate_docs, unschedulable


def cfg(**kw):
    """The allocate action alone (reclaim/preempt have their own tests)."""
    return config(actions=["allocate"], **kw)

TAINT = {"key": "dedicated", "value": "infer", "effect": "NoSchedule"}

# Each case: docs in; expected bindings (pod -> node, or pod -> None meaning "bound anywhere"),
# pipelined pods, and reason substrings per unschedulable PodGroup. ``only`` = no other bindings.
SCENARIOS = [
    dict(id="gang-fits-all-bound",
         docs=[node("n0"), node("n1"), queue("q"), job("j", pods=3, gpu=4)],
         bound={"default/j-0": "n0", "default/j-1": "n0", "default/j-2": "n1"}, only=True),
    dict(id="gang-too-big-nothing-bound",
         docs=[node("n0"), node("n1"), queue("q"), job("j", pods=3, gpu=8)],
         bound={}, only=True,
         reasons={"default/j": ["gang of 3 pods: only 2 could be placed", "pod default/j-2",
                                "0/2 nodes fit", "insufficient nvidia.com/gpu"]}),
    dict(id="gang-min-member-partial-elastic",
         docs=[node("n0", gpu=4), queue("q"), job("j", pods=6, min_member=3, gpu=1)],
         bound={"default/j-0": "n0", "default/j-1": "n0", "default/j-2": "n0", "default/j-3": "n0"}, only=True,
         reasons={"default/j": ["insufficient nvidia.com/gpu"]}),
    dict(id="gang-min-member-not-reachable",
         docs=[node("n0", gpu=4), queue("q"), job("j", pods=6, min_member=5, gpu=1)],
         bound={}, only=True, reasons={"default/j": ["only 4 could be placed"]}),
    dict(id="binpack-fullest-node",
         docs=[node("a", gpu=8), node("b", gpu=8), queue("q"), job("busy", gpu=4, running_on=["b"]),
               job("new", gpu=1)],
         cfg=cfg(gpu="binpack"), bound={"default/new-0": "b"}, only=True),
    dict(id="spread-emptiest-node",
         docs=[node("a", gpu=8), node("b", gpu=8), queue("q"), job("busy", gpu=4, running_on=["a"]),
               job("new", gpu=1)],
         cfg=cfg(gpu="spread"), bound={"default/new-0": "b"}, only=True),
    dict(id="spread-gang-over-nodes",
         docs=[node("a", gpu=8), node("b", gpu=8), queue("q"), job("j", pods=2, gpu=1)],
         cfg=cfg(gpu="spread"), bound={"default/j-0": "a", "default/j-1": "b"}, only=True),
    dict(id="cpu-binpack-vs-spread",
         docs=[node("a", gpu=0, cpu="16"), node("b", gpu=0, cpu="16"), queue("q"),
               job("busy", cpu="8", running_on=["b"]), job("new", cpu="1")],
         cfg=cfg(cpu="spread"), bound={"default/new-0": "a"}, only=True),
    dict(id="cpu-only-prefers-gpu-less-node",
         docs=[node("a-gpu", gpu=8), node("b-cpu", gpu=0), queue("q"), job("cpu", cpu="2")],
         bound={"default/cpu-0": "b-cpu"}, only=True),
    dict(id="gpu-pod-never-on-gpu-less-node",
         docs=[node("a-cpu", gpu=0), node("b-gpu", gpu=1), queue("q"), job("g", gpu=1)],
         bound={"default/g-0": "b-gpu"}, only=True),
    dict(id="priority-before-creation",
         docs=[node("n0", gpu=1), queue("q"), job("low", gpu=1, priority_class="train"),
               job("high", gpu=1, priority_class="build")],
         bound={"default/high-0": "n0"}, only=True, reasons={"default/low": ["insufficient nvidia.com/gpu"]}),
    dict(id="same-priority-older-first",
         docs=[node("n0", gpu=1), queue("q"), job("second", gpu=1, created="2024-01-01T00:10:00Z"),
               job("first", gpu=1, created="2024-01-01T00:05:00Z")],
         bound={"default/first-0": "n0"}, only=True, reasons={"default/second": ["insufficient"]}),
    dict(id="elastic-grows-after-other-jobs",
         docs=[node("n0", gpu=4), queue("q"), job("elastic", pods=4, min_member=1, gpu=1),
               job("gang", pods=2, gpu=1)],
         bound={"default/elastic-0": "n0", "default/elastic-1": "n0", "default/gang-0": "n0",
                "default/gang-1": "n0"}, only=True),
    dict(id="pipeline-onto-releasing-whole-gang",
         docs=[node("n0", gpu=8), queue("q"), job("old", pods=1, gpu=4, running_on=["n0"], deleting=True),
               job("new", pods=2, gpu=4)],
         bound={}, only=True, pipelined={"default/new-0", "default/new-1"}),
    dict(id="pipeline-all-releasing",
         docs=[node("n0", gpu=8), queue("q"), job("old", pods=1, gpu=8, running_on=["n0"], deleting=True),
               job("new", pods=1, gpu=8)],
         bound={}, only=True, pipelined={"default/new-0"}),
    dict(id="releasing-not-needed-binds-on-idle",
         docs=[node("a", gpu=8), node("b", gpu=8), queue("q"),
               job("old", gpu=4, running_on=["a"], deleting=True), job("new", pods=2, gpu=4)],
         bound={"default/new-0": None, "default/new-1": None}, only=True, pipelined=set()),
    dict(id="max-pods",
         docs=[node("n0", gpu=0, pods=2), queue("q"), job("other", running_on=["n0"]), job("j", pods=2)],
         bound={}, only=True, reasons={"default/j": ["too many pods"]}),
    dict(id="untolerated-taint",
         docs=[node("t", taints=[TAINT]), queue("q"), job("j", gpu=1)],
         bound={}, only=True, reasons={"default/j": ["0/1 nodes fit", "untolerated taint dedicated=infer"]}),
    dict(id="toleration-lets-pod-in",
         docs=[node("t", taints=[TAINT]), queue("q"),
               job("j", gpu=1, tolerations=[{"key": "dedicated", "operator": "Exists"}])],
         bound={"default/j-0": "t"}, only=True),
    dict(id="node-selector-mismatch",
         docs=[node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"}), queue("q"),
               job("j", gpu=1, node_selector={"zone": "z3"})],
         bound={}, reasons={"default/j": ["0/2 nodes fit", "2 node(s) didn't match the pod's node selector"]}),
    dict(id="node-affinity-picks-node",
         docs=[node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"}), queue("q"),
               job("j", gpu=1, affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                   "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In",
                                                                "values": ["z2"]}]}]}}})],
         bound={"default/j-0": "b"}, only=True),
    dict(id="cordoned-and-not-ready",
         docs=[node("c", unschedulable=True), node("d", ready=False), queue("q"), job("j", gpu=1)],
         bound={}, reasons={"default/j": ["1 node(s) not ready", "1 node(s) unschedulable (cordoned)"]}),
    dict(id="queue-limit-over-limit",
         docs=[node("n0"), queue("q", gpu=(0, 2)), job("j", pods=3, gpu=1)],
         bound={}, only=True, reasons={"default/j": ["OverLimit", "'q'", "limit 2"]}),
    dict(id="queue-limit-counts-running",
         docs=[node("n0"), queue("q", gpu=(0, 2)), job("run", gpu=2, running_on=["n0"]), job("j", gpu=1)],
         bound={}, only=True, reasons={"default/j": ["OverLimit"]}),
    dict(id="parent-queue-limit",
         docs=[node("n0"), queue("parent", gpu=(0, 1)), queue("q", parent="parent"), job("j", gpu=2)],
         bound={}, only=True, reasons={"default/j": ["OverLimit", "'parent'"]}),
    dict(id="non-preemptible-over-quota",
         docs=[node("n0"), queue("q", gpu=(2, -1)), job("j", pods=3, gpu=1, priority_class="build")],
         bound={}, only=True, reasons={"default/j": ["NonPreemptibleOverQuota", "quota 2"]}),
    dict(id="preemptible-may-exceed-quota",
         docs=[node("n0"), queue("q", gpu=(2, -1)), job("j", pods=3, gpu=1, priority_class="train")],
         bound={"default/j-0": "n0", "default/j-1": "n0", "default/j-2": "n0"}, only=True),
    dict(id="queue-does-not-exist",
         docs=[node("n0"), queue("q"), job("j", queue="nope", gpu=1)],
         bound={}, only=True, reasons={"default/j": ["QueueDoesNotExist", "'nope'"]}),
    dict(id="orphan-queue-unusable",
         docs=[node("n0"), queue("q", parent="ghost"), job("j", gpu=1)],
         bound={}, only=True, reasons={"default/j": ["QueueDoesNotExist", "ghost"]}),
    dict(id="non-leaf-queue",
         docs=[node("n0"), queue("parent"), queue("q", parent="parent"), job("j", queue="parent", gpu=1)],
         bound={}, only=True, reasons={"default/j": ["not a leaf queue"]}),
    dict(id="invalid-gpu-fraction",
         docs=[node("n0"), queue("q"), job("j", annotations={"gpu-fraction": "1.5"})],
         bound={}, only=True, reasons={"default/j": ["gpu-fraction", "must be a positive number smaller than 1.0"]}),
    dict(id="pod-larger-than-any-node",
         docs=[node("n0", gpu=4), queue("q"), job("j", gpu=6)],
         bound={}, only=True, reasons={"default/j": ["more than any node has"]}),
    dict(id="no-nodes",
         docs=[queue("q"), job("j", gpu=1)],
         bound={}, only=True, reasons={"default/j": ["more than any node has (0)"]}),
    dict(id="subgroups-each-reach-their-minimum",
         docs=[node("n0", gpu=2), queue("q"),
               {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                "metadata": {"name": "sg", "namespace": "default"},
                "spec": {"minMember": 2, "queue": "q",
                         "subGroups": [{"name": "a", "minMember": 1}, {"name": "b", "minMember": 2}]}},
               pod("sg-a", "sg", gpu=1, labels={"kai.scheduler/subgroup-name": "a"}),
               pod("sg-b0", "sg", gpu=1, labels={"kai.scheduler/subgroup-name": "b"}),
               pod("sg-b1", "sg", gpu=1, labels={"kai.scheduler/subgroup-name": "b"})],
         bound={}, only=True, reasons={"default/sg": ["insufficient nvidia.com/gpu"]}),
    dict(id="queue-fair-order-two-queues",
         docs=[node("n0", gpu=2), queue("qa"), queue("qb"), job("a1", queue="qa", gpu=1),
               job("b1", queue="qb", gpu=1)],
         bound={"default/a1-0": "n0", "default/b1-0": "n0"}, only=True),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=[c["id"] for c in SCENARIOS])
def test_scenario(case):
    report = simulate_docs(case["docs"], case.get("cfg") or cfg())
    got = bindings(report)
    for pod_key, node_name in case["bound"].items():
        assert pod_key in got, (pod_key, got, unschedulable(report))
        if node_name is not None:
            assert got[pod_key] == node_name, (pod_key, got)
    if case.get("only"):
        assert set(got) == set(case["bound"]), got
    if "pipelined" in case:
        assert set(report["cycles"][0]["pipelined"]) == case["pipelined"]
    reasons = unschedulable(report)
    for group, needles in case.get("reasons", {}).items():
        assert group in reasons, (group, reasons)
        for needle in needles:
            assert needle in reasons[group], (needle, reasons[group])


def test_pipelined_gang_binds_next_cycle_after_release():
    docs = [node("n0", gpu=8), queue("q"), job("old", gpu=8, running_on=["n0"], deleting=True),
            job("new", gpu=8)]
    r = simulate_docs(docs, cfg(), cycles=2)
    assert r["cycles"][0]["pipelined"] == ["default/new-0"]
    # the releasing pod is still there in cycle 2, so it stays pipelined, never partially bound
    assert r["cycles"][1]["bindings"] == []


def test_bound_pods_feed_back_into_next_cycle():
    docs = [node("n0", gpu=2), queue("q"), job("a", gpu=2), job("b", gpu=2)]
    r = simulate_docs(docs, cfg(), cycles=2)
    assert bindings(r, 0) == {"default/a-0": "n0"}
    assert bindings(r, 1) == {}
    assert "default/b" in unschedulable(r, 1)
    alloc = {q["name"]: q["allocated"]["gpu"] for q in r["queues"]}
    assert alloc["q"] == 2


def test_elastic_extras_wait_for_gang_jobs_across_queues():
    docs = [node("n0", gpu=3), queue("q"), job("e", pods=3, min_member=1, gpu=1),
            job("g", pods=2, gpu=1)]
    got = bindings(simulate_docs(docs, cfg()))
    assert {k for k in got if k.startswith("default/g-")} == {"default/g-0", "default/g-1"}
    assert sum(1 for k in got if k.startswith("default/e-")) == 1


# --- properties over random small clusters ---------------------------------------------------

@st.composite
def clusters(draw):
    n_nodes = draw(st.integers(1, 5))
    nodes = [node(f"node-{i}", gpu=draw(st.sampled_from([0, 2, 4, 8])), cpu=str(draw(st.integers(2, 16))),
                  pods=draw(st.integers(2, 12)))
             for i in range(n_nodes)]
    jobs = []
    running = []
    for j in range(draw(st.integers(1, 6))):
        pods = draw(st.integers(1, 4))
        jobs.append(dict(name=f"job-{j}", pods=pods, min_member=draw(st.integers(1, pods)),
                         gpu=draw(st.sampled_from([0, 0, 1, 2, 4])), cpu=str(draw(st.integers(1, 4))),
                         priority_class=draw(st.sampled_from(["", "train", "build"]))))
    if draw(st.booleans()):
        i = draw(st.integers(0, n_nodes - 1))
        running.append(dict(name="running", node=f"node-{i}", deleting=draw(st.booleans())))
    return dict(nodes=nodes, jobs=jobs, running=running,
                strategy=draw(st.sampled_from(["binpack", "spread"])))


def _docs(c, node_order=None):
    nodes = c["nodes"] if node_order is None else [c["nodes"][i] for i in node_order]
    docs = list(nodes) + [queue("q")]
    for r in c["running"]:
        docs += job(r["name"], cpu="1", running_on=[r["node"]], deleting=r["deleting"])
    for j in c["jobs"]:
        docs += job(j["name"], pods=j["pods"], min_member=j["min_member"], gpu=j["gpu"], cpu=j["cpu"],
                    priority_class=j["priority_class"])
    return docs


def _cpu_milli(v):
    return int(float(v) * 1000)


PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(clusters())
def test_properties_capacity_and_gangs(c):
    report = simulate_docs(_docs(c), cfg(gpu=c["strategy"], cpu=c["strategy"]))
    got = bindings(report)
    cap = {n["metadata"]["name"]: n["status"]["allocatable"] for n in c["nodes"]}
    used = {name: {"gpu": 0, "cpu": 0, "pods": 0} for name in cap}
    for r in c["running"]:
        used[r["node"]]["cpu"] += 1000
        used[r["node"]]["pods"] += 1
    by_pod = {}
    for j in c["jobs"]:
        for i in range(j["pods"]):
            by_pod[f"default/{j['name']}-{i}"] = j
    for pod_key, node_name in got.items():
        j = by_pod[pod_key]
        used[node_name]["gpu"] += j["gpu"]
        used[node_name]["cpu"] += _cpu_milli(j["cpu"])
        used[node_name]["pods"] += 1
    for name, u in used.items():
        a = cap[name]
        assert u["gpu"] <= int(a.get("nvidia.com/gpu", 0)), (name, u, a)
        assert u["cpu"] <= _cpu_milli(a["cpu"]), (name, u, a)
        assert u["pods"] <= int(a["pods"]), (name, u, a)
    pipelined = set(report["cycles"][0]["pipelined"])
    for j in c["jobs"]:
        mine = [k for k in got if k.rsplit("-", 1)[0] == f"default/{j['name']}"]
        piped = [k for k in pipelined if k.rsplit("-", 1)[0] == f"default/{j['name']}"]
        assert len(mine) == 0 or len(mine) >= j["min_member"], (j, mine)
        if j["min_member"] == j["pods"]:
            assert not (mine and piped), (j, mine, piped)   # a pipelined gang binds nothing
        # (an elastic extra beyond minMember may be pipelined after the gang was bound)
        if not mine:
            assert len(piped) == 0 or len(piped) >= j["min_member"], (j, piped)


@PROP
@given(clusters(), st.randoms(use_true_random=False))
def test_properties_independent_of_node_order(c, rnd):
    order = list(range(len(c["nodes"])))
    rnd.shuffle(order)
    conf = cfg(gpu=c["strategy"], cpu=c["strategy"])
    a = simulate_docs(_docs(c), conf)
    b = simulate_docs(_docs(c, order), conf)
    assert bindings(a) == bindings(b)
    assert a["cycles"][0]["pipelined"] == b["cycles"][0]["pipelined"]
    assert unschedulable(a) == unschedulable(b)


def test_random_seeded_smoke_many_jobs():
    rng = random.Random(3)
    docs = [node(f"n{i}", gpu=8) for i in range(6)] + [queue("q")]
    for j in range(20):
        docs += job(f"j{j}", pods=rng.randint(1, 4), gpu=rng.choice([1, 2, 4]))
    r = simulate_docs(docs, cfg())
    got = bindings(r)
    per_node = {}
    for k, n in got.items():
        per_node[n] = per_node.get(n, 0) + 1
    assert got and all(v <= 8 for v in per_node.values())


# ---------------------------------------------------------------------------- short paths
# Single-pod jobs take allocate's short path and share capacity answers per request
# (kai.actions.allocate.SHORT_PATHS); the general SubGroup walk is the reference. Both must
# make the same decisions, with the same reasons, cycle after cycle.

def _decisions(result) -> tuple:
    return ([(d.pod, d.node, d.action) for d in result.bindings],
            [(d.pod, d.node, d.action, d.preemptor) for d in result.evictions],
            [(d.pod, d.node) for d in result.pipelined],
            sorted(result.unschedulable.items()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n_nodes=st.integers(1, 8), n_jobs=st.integers(1, 40))
def test_short_paths_decide_as_the_general_walk(seed, n_nodes, n_jobs):
    from kai.actions import allocate as allocate_mod
    from kai.config import default_config
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.simulator import _advance, build_state
    from kai.sim.synthetic import mixed_cluster

    states = [build_state(mixed_cluster(seed, n_nodes, n_jobs)) for _ in range(2)]
    scheds = [Scheduler(s, default_config()) for s in states]
    now = 1_704_070_800.0
    try:
        for _cycle in range(3):
            got = []
            for short, sched, state in zip((True, False), scheds, states):
                allocate_mod.SHORT_PATHS = short
                result = sched.run_cycle(RecordingCache(state), now=now)
                got.append(_decisions(result))
                _advance(state, result)
            assert got[0] == got[1]
            now += 1.0
    finally:
        allocate_mod.SHORT_PATHS = True
