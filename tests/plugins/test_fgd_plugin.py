"""kai.plugins.fgd: the ``fgd`` placement strategy through the scheduler (nodeplacement
gpu/cpu: fgd), worked scenarios where FGD and KAI's binpack differ, and agreement between
the engine and the bench's array replay on a slice of the Alibaba trace."""
import os
import sys

import numpy as np
import pytest

from kai.actions.allocate import Allocate
from kai.cache.cluster_state import ClusterState
from kai.config import ConfigError, parse_config
from kai.podgrouper.grouper import group_for_pod
from kai.scheduler import RecordingCache, Scheduler
from kai.sim import traces as T
from kai.sim.synthetic import open_queue

ANY = 2**64 - 1


def config(gpu="fgd", cpu="fgd", sharing="gpupack"):
    plugins = [{"name": "predicates"}, {"name": "proportion"}]
    if sharing:
        plugins.append({"name": sharing})
    plugins.append({"name": "nodeplacement", "arguments": {"gpu": gpu, "cpu": cpu}})
    return parse_config({"actions": "allocate", "tiers": [{"plugins": plugins}]})


def nodes_(rows):
    """rows: (name, cpu millicores, memory MiB, gpus, model)."""
    return T.TraceNodes([r[0] for r in rows], np.array([float(r[1]) for r in rows]),
                        np.array([float(r[2]) for r in rows]), np.array([r[3] for r in rows]),
                        [r[4] for r in rows])


def pods_(rows):
    """rows: (name, cpu millicores, memory MiB, num_gpu, gpu_milli, spec)."""
    return T.TracePods([r[0] for r in rows], np.array([float(r[1]) for r in rows]),
                       np.array([float(r[2]) for r in rows]), np.array([r[3] for r in rows]),
                       np.array([r[4] for r in rows]), [tuple(r[5]) for r in rows])


def state_(nodes, pods, running=()):
    """``running``: (pod row, node name) placed before the cycle."""
    st = ClusterState(grouper=lambda pod: group_for_pod(pod, {}))
    objs = T.to_pods(pods)
    if running:
        run_pods = T.to_pods(pods_([r for r, _ in running]), namespace="running")
        for p, (_, node) in zip(run_pods, running):
            p.spec.node_name = node
            p.status.phase = "Running"
        objs = run_pods + objs
    st.load(T.to_nodes(nodes), [], objs, queues=[open_queue("default-queue")])
    return st


def scorer(ssn):
    """The session's FGD scorer (held by the nodeplacement plugin), or None."""
    return next(p for p in ssn.plugins if p.name == "nodeplacement").fgd


def run(st, cfg, types=None):
    """One allocate cycle; ``types`` ({(cpu, mem bytes, g, ndev, models): weight}) replaces
    the session's workload distribution. Returns {pod name: (node, gpu groups)}."""
    sched = Scheduler(st, cfg)
    cache = RecordingCache(st)
    ssn = sched.open_session(cache, now=1_900_000_000.0)
    try:
        if types is not None:
            scorer(ssn).set_types(types)
        Allocate().execute(ssn)
    finally:
        ssn.close()
    return {b.pod.split("/", 1)[1]: (b.node, b.gpu_groups) for b in cache.result.bindings}


MIB = 1024 * 1024


# ---------------------------------------------------------------------- config
def test_config_accepts_fgd_and_rejects_unknown_values():
    assert config().plugin_args("nodeplacement") == {"gpu": "fgd", "cpu": "fgd"}
    with pytest.raises(ConfigError, match="binpack, spread or fgd"):
        config(gpu="tetris")


def test_fgd_registers_scorer_and_shared_allocator_only_when_selected():
    nodes = nodes_([("n0", 8000, 8192, 2, "A")])
    st = state_(nodes, pods_([("p", 1000, 1024, 1, 1000, ())]))
    ssn = Scheduler(st, config()).open_session(RecordingCache(st))
    assert scorer(ssn).kinds == {"gpu", "cpu"}
    assert ssn.shared_gpu_allocator == scorer(ssn).allocate_shared
    ssn.close()
    ssn = Scheduler(st, config(gpu="binpack", cpu="binpack")).open_session(RecordingCache(st))
    assert scorer(ssn) is None
    ssn.close()


def test_workload_distribution_is_the_sessions_pending_and_running_pods():
    nodes = nodes_([("n0", 64000, 65536, 8, "A")])
    pods = pods_([("a", 1000, 1024, 1, 500, ()), ("b", 1000, 1024, 1, 500, ()), ("c", 2000, 1024, 2, 1000, ())])
    st = state_(nodes, pods, running=[(("r", 1000, 1024, 1, 1000, ()), "n0")])
    ssn = Scheduler(st, config()).open_session(RecordingCache(st))
    f = scorer(ssn)
    got = {(float(f.g_values[g]) if g >= 0 else 0.0, int(nd)): round(float(w), 3)
           for g, nd, w in zip(f.t_g, f.t_ndev, f.t_weight)}
    assert got == {(0.5, 1): 0.5, (1.0, 2): 0.25, (1.0, 1): 0.25}
    ssn.close()


# ---------------------------------------------------------------------- scenarios
def test_cpu_task_leaves_cpu_for_the_gpu_types():
    # typical pod: 1 GPU + 8 CPUs. A CPU-only pod of 4 CPUs:
    # on n0 (16 CPUs free) 12 remain -> GPU pods still fit -> no new fragment;
    # on n1 (10 CPUs free) 6 remain -> both GPUs become unusable -> +2 GPU of fragment.
    nodes = nodes_([("n0", 16000, 65536, 2, "A"), ("n1", 10000, 65536, 2, "A")])
    pods = pods_([("cpu-pod", 4000, 1024, 0, 0, ())])
    types = {(8000.0, 1024.0 * MIB, 1.0, 1, ANY): 1.0}
    assert run(state_(nodes, pods), config(), types)["cpu-pod"][0] == "n0"
    # KAI's binpack on CPU packs it onto the fuller node
    assert run(state_(nodes, pods), config(gpu="binpack", cpu="binpack"))["cpu-pod"][0] == "n1"


def test_whole_gpu_goes_where_it_blocks_no_typical_pod():
    # typical pod: 2 GPUs of model A. A 1-GPU pod of any model:
    # on n0 (model A) it leaves 1 GPU no 2-GPU A pod can use (+1); on n1 (model B) the GPUs
    # were already useless to the typical pod (-1).
    nodes = nodes_([("n0", 64000, 65536, 2, "A"), ("n1", 64000, 65536, 2, "B")])
    pods = pods_([("one", 1000, 1024, 1, 1000, ())])
    st = state_(nodes, pods)
    ssn = Scheduler(st, config()).open_session(RecordingCache(st))
    bit_a = int(scorer(ssn).node_model[0])
    ssn.close()
    types = {(1000.0, 1024.0 * MIB, 1.0, 2, bit_a): 1.0}
    assert run(state_(nodes, pods), config(), types)["one"][0] == "n1"
    assert run(state_(nodes, pods), config(gpu="binpack", cpu="binpack"))["one"][0] == "n0"


def test_fraction_opens_a_new_device_rather_than_leave_an_unusable_slice():
    # n0 has a running 0.4 fraction (a group with 0.6 free) and one idle device.
    # Typical pod: 0.5 GPU. A 0.4 fraction into the group leaves 0.2 nobody can use;
    # on the idle device it leaves 0.6 + 0.6, both usable. gpupack fills the group.
    nodes = nodes_([("n0", 64000, 65536, 2, "A")])
    pods = pods_([("f", 1000, 1024, 1, 400, ())])
    running = [(("r", 1000, 1024, 1, 400, ()), "n0")]
    types = {(1000.0, 1024.0 * MIB, 0.5, 1, ANY): 1.0}
    st = state_(nodes, pods, running)
    held = next(iter(next(t for j in st.jobs.values() for t in j.tasks.values() if t.name == "r").gpu_groups))
    fgd_groups = run(st, config(), types)["f"][1]
    pack_groups = run(state_(nodes, pods, running), config(gpu="binpack", cpu="binpack"))["f"][1]
    assert pack_groups == [held]
    assert fgd_groups and fgd_groups != [held]


def test_fraction_fills_the_slice_that_would_otherwise_stay_fragmented():
    # n0: group with 0.5 free; n1: empty. Typical pod: 1 whole GPU. A 0.5 fraction on n1
    # would break a whole GPU (+0.5); in n0's group it removes the fragment (-0.5).
    nodes = nodes_([("n0", 64000, 65536, 2, "A"), ("n1", 64000, 65536, 2, "A")])
    pods = pods_([("f", 1000, 1024, 1, 500, ())])
    running = [(("r", 1000, 1024, 1, 500, ()), "n0")]
    types = {(1000.0, 1024.0 * MIB, 1.0, 1, ANY): 1.0}
    assert run(state_(nodes, pods, running), config(), types)["f"][0] == "n0"


def test_unplaceable_fraction_falls_back_to_kai_with_its_reason():
    nodes = nodes_([("n0", 64000, 65536, 1, "A")])
    pods = pods_([("big", 1000, 1024, 1, 700, ())])
    running = [(("r", 1000, 1024, 1, 500, ()), "n0")]
    st = state_(nodes, pods, running)
    result = Scheduler(st, config()).run_cycle(RecordingCache(st), now=1_900_000_000.0)
    assert not result.bindings
    (reasons,) = result.unschedulable.values()
    assert "GPU fraction 0.7" in reasons[0]


# ---------------------------------------------------------------------- engine vs array replay
def test_engine_matches_the_bench_array_replay_on_a_trace_slice():
    """The scheduler with fgd (both task mixes) / binpack makes the same placements as
    bench/bench_traces.py's array replay (same kernel, KAI's formulas) on 1 node in 40 of the
    openb cluster: the Alibaba trace with $KAI_TRACE_DIR, else its synthetic stand-in."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    import bench_traces as B
    w = T.load_workload("default")
    print(w.origin)
    nodes = w.nodes.subset(range(0, len(w.nodes), 40))
    arr = T.arrivals(w.pods, nodes.total_gpu, 1.3, seed=1)
    allocs = {}
    for policy, mix in (("fgd", "session"), ("fgd", "arrived"), ("binpack", "session")):
        model = B.model_replay(nodes, arr, policy, mix=mix)
        engine = B.engine_replay(nodes, arr, policy, mix=mix)
        assert engine.placed == model.placed
        assert np.allclose(engine.alloc, model.alloc)
        allocs[policy, mix] = engine.alloc
    # the mix matters: seeing only the arrived pods changes placements
    assert not np.allclose(allocs["fgd", "session"], allocs["fgd", "arrived"])


FGD_VS_BINPACK = """
apiVersion: scheduling.run.ai/v2
kind: Queue
metadata: {name: q}
spec: {resources: {gpu: {quota: -1, limit: -1, overQuotaWeight: 1}, cpu: {quota: -1, limit: -1, overQuotaWeight: 1},
       memory: {quota: -1, limit: -1, overQuotaWeight: 1}}}
---
apiVersion: v1
kind: Node
metadata: {name: n0, labels: {nvidia.com/gpu.product: A}}
status: {allocatable: {cpu: "32", memory: 64Gi, nvidia.com/gpu: "2", pods: "110"}}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {nvidia.com/gpu.product: B}}
status: {allocatable: {cpu: "32", memory: 64Gi, nvidia.com/gpu: "2", pods: "110"}}
---
apiVersion: v1
kind: Pod
metadata: {name: one, namespace: default, labels: {kai.scheduler/queue: q}, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  schedulerName: kai-scheduler
  containers: [{name: c, image: x, resources: {limits: {nvidia.com/gpu: "1"}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: two, namespace: default, labels: {kai.scheduler/queue: q}, creationTimestamp: "2024-01-01T00:01:00Z"}
spec:
  schedulerName: kai-scheduler
  nodeSelector: {nvidia.com/gpu.product: A}
  containers: [{name: c, image: x, resources: {limits: {nvidia.com/gpu: "2"}}}]
"""


def test_kai_simulate_selects_fgd_from_a_config_file(tmp_path):
    """``kai simulate --config`` with nodeplacement gpu/cpu: fgd. The 1-GPU pod comes first:
    binpack takes n0 (tie, name order) and leaves the 2-GPU model-A pod pending; FGD sees that
    a GPU taken on n0 is a GPU the 2-GPU A pods cannot use and puts it on n1, so both run."""
    from kai.config import load_config
    from kai.sim.loader import load_manifests
    from kai.sim.simulator import simulate
    conf = tmp_path / "conf.yaml"
    conf.write_text('actions: "allocate"\ntiers:\n- plugins:\n  - name: predicates\n  - name: proportion\n'
                    '  - name: gpupack\n  - name: nodeplacement\n    arguments: {gpu: fgd, cpu: fgd}\n')
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(FGD_VS_BINPACK)

    def placements(config) -> dict[str, str]:
        report = simulate(load_manifests([str(cluster)]), config)
        return {b["pod"]: b["node"] for b in report["cycles"][0]["bindings"]}

    assert load_config(str(conf)).plugin_args("nodeplacement") == {"gpu": "fgd", "cpu": "fgd"}
    assert placements(load_config(str(conf))) == {"default/one": "n1", "default/two": "n0"}
    assert placements(load_config(str(conf)).__class__()) == {"default/one": "n0"}


# ---------------------------------------------------------------------- fgdMix: arrived
def test_arrived_mix_holds_only_the_pods_created_up_to_the_decision():
    """fgdMix: arrived. Placing the first pod, the mix is that pod's type alone; placing the
    third, the first three (a CPU pod, a whole GPU, a fraction); the session mix has all four
    from the start."""
    nodes = nodes_([("n0", 64000, 65536, 2, "A"), ("n1", 64000, 65536, 2, "A")])
    pods = pods_([("a", 1000, 1024, 1, 1000, ()), ("b", 2000, 1024, 0, 0, ()), ("c", 1000, 1024, 1, 500, ()),
                  ("d", 1000, 1024, 1, 250, ())])
    st = state_(nodes, pods)
    seen = []
    for mix in ("arrived", "session"):
        cfg = parse_config({"actions": "allocate", "tiers": [{"plugins": [
            {"name": "predicates"}, {"name": "proportion"}, {"name": "gpupack"},
            {"name": "nodeplacement", "arguments": {"gpu": "fgd", "cpu": "fgd", "fgdMix": mix}}]}]})
        ssn = Scheduler(st, cfg).open_session(RecordingCache(st), now=1_900_000_000.0)
        try:
            tasks = {t.name: t for j in ssn.jobs.values() for t in j.tasks.values()}
            mask = np.ones(len(ssn.node_infos), dtype=np.uint8)
            for name in ("a", "c"):
                scorer(ssn).deltas(tasks[name], mask)
                seen.append((mix, name, sorted(zip(scorer(ssn).t_g.tolist(), scorer(ssn).t_weight.round(3).tolist()))))
        finally:
            ssn.close()
    g = {0.25: 0, 0.5: 1, 1.0: 2}          # index of each per-device demand in g_values (session mix)
    assert seen[0] == ("arrived", "a", [(0, 1.0)])                             # only a (1 GPU) so far
    assert seen[1] == ("arrived", "c", [(-1, 0.333), (0, 0.333), (1, 0.333)])  # a, b (CPU), c (0.5)
    assert seen[2][2] == seen[3][2] == sorted([(-1, 0.25), (g[0.25], 0.25), (g[0.5], 0.25), (g[1.0], 0.25)])


def test_fgd_mix_is_validated():
    with pytest.raises(ConfigError, match="fgdMix='all'.*session, arrived"):
        parse_config({"actions": "allocate", "tiers": [{"plugins": [
            {"name": "nodeplacement", "arguments": {"gpu": "fgd", "fgdMix": "all"}}]}]})
