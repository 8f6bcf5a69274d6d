"""Volume scheduling at scale: 2,000 nodes, one local PV each (hostname node affinity, half of
them already bound), and 1,000 pending StatefulSet-like pods, each with its own unbound
WaitForFirstConsumer claim (issue 9 item 5: the volume filters must not cost the fast path).

Two figures, in the same run:
- a full allocate cycle with the volume pods, per bound pod, against the same pods without
  volumes (the cost of VolumeBinding, VolumeRestrictions, VolumeZone and NodeVolumeLimits on
  top of resource placement: masks from cached PV node masks and incremental candidate counts);
- one pod's VolumeBinding mask over all nodes against the node-by-node reference of
  kube-scheduler's rules (tests/plugins/volume_reference.py), on a slice of the nodes.
Run: PYTHONPATH=.:bench:tests/plugins python -m pytest bench/bench_volumes.py --benchmark-enable -p no:cacheprovider -s
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import msgspec
import pytest

from _sizes import size
from kai.api.k8s import Node, Pod, PodGroup
from kai.api.storage import PersistentVolume, PersistentVolumeClaim, StorageClass
from kai.cache.cluster_state import ClusterState
from kai.config import parse_config
from kai.scheduler import RecordingCache, Scheduler
from kai.sim.synthetic import open_queue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "plugins"))
import volume_reference as ref  # noqa: E402

N_NODES = size(2_000, 100)
N_PODS = size(1_000, 50)
CONFIG = parse_config({"actions": "allocate"})
HOST = "kubernetes.io/hostname"


def _docs(volumes: bool):
    nodes = [{"metadata": {"name": f"node-{i:05d}", "labels": {HOST: f"node-{i:05d}"}},
              "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"}}} for i in range(N_NODES)]
    sc = {"metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner",
          "volumeBindingMode": "WaitForFirstConsumer"}
    pvs, claims = [], []
    for i in range(N_NODES):
        spec = {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": HOST, "operator": "In", "values": [f"node-{i:05d}"]}]}]}}}
        status = {"phase": "Available"}
        if i % 2:                                            # half the PVs are bound already
            spec["claimRef"] = {"namespace": "other", "name": f"old-{i}"}
            status = {"phase": "Bound"}
        pvs.append({"metadata": {"name": f"pv-{i:05d}"}, "spec": spec, "status": status})
    pgs, pods = [], []
    for i in range(N_PODS):
        claim = f"data-db-{i}"
        claims.append({"metadata": {"name": claim, "namespace": "db", "uid": f"c{i}"},
                       "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                                "resources": {"requests": {"storage": "10Gi"}}}})
        pgs.append({"metadata": {"name": f"pg-{i}", "namespace": "db"}, "spec": {"minMember": 1, "queue": "team"}})
        spec = {"schedulerName": "kai-scheduler",
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}
        if volumes:
            spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        pods.append({"metadata": {"name": f"db-{i}", "namespace": "db", "uid": f"p{i}",
                                  "annotations": {"pod-group-name": f"pg-{i}"},
                                  "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": spec})
    return nodes, sc, pvs, claims, pgs, pods


def _state(volumes: bool) -> ClusterState:
    nodes, sc, pvs, claims, pgs, pods = _docs(volumes)
    state = ClusterState()
    state.load([msgspec.convert(n, Node) for n in nodes], [msgspec.convert(p, PodGroup) for p in pgs],
               [msgspec.convert(p, Pod) for p in pods], queues=[open_queue("root"), open_queue("team", "root")])
    state.storage.load({"StorageClass": [msgspec.convert(sc, StorageClass)],
                        "PersistentVolume": [msgspec.convert(p, PersistentVolume) for p in pvs],
                        "PersistentVolumeClaim": [msgspec.convert(c, PersistentVolumeClaim) for c in claims]})
    return state


def _cycle(benchmark, volumes: bool):
    holder = {}

    def setup():
        holder["state"] = _state(volumes)
        return (), {}

    def run():
        state = holder["state"]
        return Scheduler(state, CONFIG).run_cycle(RecordingCache(state))

    result = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    return result, holder["state"]


def test_cycle_with_volumes(benchmark):
    result, state = _cycle(benchmark, True)
    bound = len(result.bindings)
    free = (N_NODES + 1) // 2                                # available PVs, one pod each
    assert bound == min(N_PODS, free)
    # every claim got its own PV, on the pod's node
    chosen = {}
    for p in state.pods.values():
        for plan in p.volume_plan:
            assert plan.volume not in chosen
            chosen[plan.volume] = p.node_name
            assert plan.volume.replace("pv-", "node-") == p.node_name
    per_pod = benchmark.stats.stats.mean / bound
    # baseline in the same run: the same pods without volumes
    start = time.perf_counter()
    plain = _state(False)
    t0 = time.perf_counter()
    got = Scheduler(plain, CONFIG).run_cycle(RecordingCache(plain))
    plain_s = time.perf_counter() - t0
    plain_per_pod = plain_s / max(len(got.bindings), 1)
    benchmark.extra_info.update({"nodes": N_NODES, "pods": N_PODS, "bound": bound,
                                 "per_pod_us": round(per_pod * 1e6, 1),
                                 "without_volumes_per_pod_us": round(plain_per_pod * 1e6, 1),
                                 "ratio": round(per_pod / plain_per_pod, 2), "setup_s": round(t0 - start, 2)})
    print(f"\n{N_NODES} nodes, {N_PODS} pods with a WaitForFirstConsumer claim each: {per_pod * 1e6:.0f} us/pod "
          f"(cycle {benchmark.stats.stats.mean:.2f} s, {bound} bound); the same pods without volumes "
          f"{plain_per_pod * 1e6:.0f} us/pod; ratio {per_pod / plain_per_pod:.1f}x")


def test_mask_vs_reference(benchmark):
    """One pod's VolumeBinding mask over all nodes (kai) vs the node-by-node reference."""
    from kai.framework.session import Session
    from kai.plugins.volumebinding import VolumeBindingPredicate, VolumeSession

    state = _state(True)
    ssn = Session(state, None, CONFIG, now=0.0)
    vs = VolumeSession(ssn)
    pred = VolumeBindingPredicate(vs)
    task = next(iter(state.pods.values()))
    pred.mask(task, None)                                    # warm: candidates and PV masks cached
    mask = benchmark(lambda: pred.mask(task, None))
    kai_us = benchmark.stats.stats.mean * 1e6
    nodes, sc, pvs, claims, pgs, pods = _docs(True)
    world = ref.World.from_docs([{"kind": "Node", **n} for n in nodes] + [{"kind": "StorageClass", **sc}]
                                + [{"kind": "PersistentVolume", **p} for p in pvs]
                                + [{"kind": "PersistentVolumeClaim", **c} for c in claims]
                                + [{"kind": "Pod", **p} for p in pods[:1]])
    sample = [n["metadata"]["name"] for n in nodes[: max(N_NODES // 20, 10)]]
    t = time.perf_counter()
    got = [world.filter("db-0", n)[0] for n in sample]
    ref_us = (time.perf_counter() - t) / len(sample) * N_NODES * 1e6
    idx = {info.name: info.idx for info in state.nodes.infos}
    assert got == [bool(mask[idx[n]]) for n in sample]
    benchmark.extra_info.update({"nodes": N_NODES, "pvs": N_NODES, "mask_us": round(kai_us, 1),
                                 "reference_us": round(ref_us), "ratio": round(ref_us / kai_us)})
    print(f"\nVolumeBinding mask over {N_NODES} nodes / {N_NODES} PVs: {kai_us:.1f} us; node-by-node "
          f"reference {ref_us / 1000:.0f} ms (extrapolated from {len(sample)} nodes); ratio {ref_us / kai_us:.0f}x")
