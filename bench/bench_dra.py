"""DRA pod decision at 1,000 nodes x 8 GPUs (issue 10: <= 100 us per decision).

A decision is what the allocate action will do per pod with claims: the feasibility mask over
all nodes (kai.dra.allocator.DraAllocator.feasible) and the device pick on the chosen node
(allocate), undone afterwards so every round sees the same half-used cluster. Two pods:
one claim for 2 GPUs of a class (``device.driver == ...``), and one claim whose request adds a
capacity selector (``memory.compareTo(quantity("40Gi")) >= 0``, vectorized) plus a second
request tied by a matchAttribute constraint (exact search on candidate nodes). The baseline
in the same run is the same decision through the pure-Python reference kernels
(kai/_fast/reference/dra.py), on a tenth of the decisions.

``test_dra_allocate_cycle`` (issue 10, phase 2): the whole allocate cycle through the scheduler
over 4,000 pods with claim templates on the same cluster (session open with the quota refresh,
the dynamicresources filter, the device pick, commit with assumed allocations); baseline in the
same run: the same pods asking for ``nvidia.com/gpu`` from the device plugin instead.
Run: PYTHONPATH=.:bench python -m pytest bench/bench_dra.py --benchmark-enable -p no:cacheprovider -s
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from _sizes import size
from kai._fast.reference import dra as ref
from kai.dra import allocator as A
from kai.dra.inventory import build_inventory
from kai.testing import dra as B

N_NODES = size(1000, 50)
PER_NODE = 8
DOM = B.DRIVER


def _cluster():
    nodes = [f"node-{i:04d}" for i in range(N_NODES)]
    slices = [B.gpu_slice(n, PER_NODE, memory="80Gi" if i % 2 else "40Gi") for i, n in enumerate(nodes)]
    inv = build_inventory(slices, nodes)
    classes = {"gpu": B.device_class("gpu", f'device.driver == "{DOM}"')}
    al = A.DraAllocator(inv, classes)
    rng = np.random.default_rng(1)
    al.used[rng.random(inv.n_devices) < 0.5] = 1            # half the GPUs are taken
    return al


CLAIMS = {
    "2gpu": B.claim("c", B.request("gpu", "gpu", 2)),
    "selector+constraint": B.claim("c", B.request("a", "gpu", 1, f'device.capacity["{DOM}"].memory.compareTo('
                                                               'quantity("40Gi")) > 0'),
                                   B.request("b", "gpu", 1), constraints=[{"matchAttribute": f"{DOM}/numa"}]),
}


def _decide(al, req):
    mask = al.feasible(req)
    node = int(np.argmax(mask))
    got = al.allocate(req, node)
    assert got is not None
    al.undo(got)
    return node


@pytest.mark.parametrize("shape", list(CLAIMS))
def test_dra_decision_per_pod(benchmark, shape, monkeypatch):
    al = _cluster()
    claim = CLAIMS[shape]
    req = al.prepare([A.PodClaim("c", "default/c", claim)])
    benchmark(lambda: _decide(al, req))
    kai_us = benchmark.stats.stats.mean * 1e6
    # baseline: the same decisions through the pure-Python kernels
    monkeypatch.setattr(A, "Search", ref.Search)
    monkeypatch.setattr(A, "_node_mask", ref.node_mask)
    req_ref = al.prepare([A.PodClaim("c", "default/c", claim)])
    rounds = 2 if N_NODES > 100 else 5
    t = time.perf_counter()
    for _ in range(rounds):
        _decide(al, req_ref)
    ref_us = (time.perf_counter() - t) / rounds * 1e6
    benchmark.extra_info.update({"nodes": N_NODES, "devices": N_NODES * PER_NODE, "per_decision_us": round(kai_us, 1),
                                 "reference_per_decision_us": round(ref_us), "ratio": round(ref_us / kai_us),
                                 "target_us": 100})
    print(f"\n[{shape}] {N_NODES} nodes x {PER_NODE} devices: {kai_us:.1f} us/decision, "
          f"pure-Python reference {ref_us:.0f} us, ratio {ref_us / kai_us:.0f}x")


# ------------------------------------------------------------------ whole cycle
N_PODS = size(4000, 200)


def _cycle_state(dra: bool, n_pods: int = N_PODS):
    """N_NODES nodes x 8 GPUs and ``n_pods`` pending pods in single-pod jobs, half asking for one
    GPU and half for two: through DRA claim templates (``dra``) or as ``nvidia.com/gpu`` (the
    device-plugin path, the baseline)."""
    import msgspec

    from kai.api.k8s import Node, Pod, PodGroup
    from kai.cache.cluster_state import ClusterState
    from kai.cache.dra_store import DraStore
    from kai.sim.synthetic import open_queue
    names = [f"node-{i:04d}" for i in range(N_NODES)]
    alloc = {"cpu": "128", "memory": "1Ti", "pods": "110"}
    nodes = [msgspec.convert({"metadata": {"name": n}, "status": {
        "allocatable": alloc if dra else {**alloc, "nvidia.com/gpu": str(PER_NODE)},
        "conditions": [{"type": "Ready", "status": "True"}]}}, Node) for n in names]
    pgs, pods = [], []
    for i in range(n_pods):
        gpus = 1 + i % 2
        pgs.append(msgspec.convert({"metadata": {"name": f"j{i}", "namespace": "ns",
                                                 "creationTimestamp": "2025-01-01T00:00:00Z"},
                                    "spec": {"minMember": 1, "queue": "team"}}, PodGroup))
        spec = {"schedulerName": "kai-scheduler", "containers": [{"name": "c", "resources": {
            "requests": {"cpu": "1", "memory": "1Gi", **({} if dra else {"nvidia.com/gpu": str(gpus)})},
            **({"claims": [{"name": "gpus"}]} if dra else {})}}]}
        if dra:
            spec["resourceClaims"] = [{"name": "gpus", "resourceClaimTemplateName": f"gpu{gpus}"}]
        pods.append(msgspec.convert({"metadata": {"name": f"p{i}", "namespace": "ns", "uid": f"uid-p{i}",
                                                  "annotations": {"pod-group-name": f"j{i}"}},
                                     "spec": spec}, Pod))
    state = ClusterState()
    state.load(nodes, pgs, pods, queues=[open_queue("root"), open_queue("team", "root")])
    if dra:
        store = DraStore()
        store.generate = True
        store.load({"ResourceSlice": [B.gpu_slice(n, PER_NODE) for n in names],
                    "DeviceClass": [B.device_class("gpu", f'device.driver == "{DOM}"')],
                    "ResourceClaimTemplate": [B.template(f"gpu{g}", B.request("gpu", "gpu", g), namespace="ns")
                                              for g in (1, 2)]})
        state.dra = store
    return state


def test_dra_allocate_cycle(benchmark):
    """The allocate action over N_PODS DRA pods (templates) on N_NODES x 8 DRA GPUs, through the
    scheduler (session open with the quota refresh, filter, device pick, commit); baseline in
    the same run: the same pods asking for nvidia.com/gpu (no DRA)."""
    from kai.config import parse_config
    from kai.scheduler import RecordingCache, Scheduler
    cfg = parse_config({"actions": "allocate"})
    holder = {}

    def setup():
        holder["state"] = _cycle_state(True)
        return (), {}

    def run():
        state = holder["state"]
        return Scheduler(state, cfg).run_cycle(RecordingCache(state))

    result = benchmark.pedantic(run, setup=setup, rounds=2, iterations=1)
    bound = len(result.bindings)
    want = min(N_PODS, N_NODES * PER_NODE * 2 // 3)              # 1.5 GPUs per pod on average
    assert bound >= 0.95 * want, (bound, want)
    per_pod = benchmark.stats.stats.mean / max(bound, 1)
    base = _cycle_state(False)
    t = time.perf_counter()
    r2 = Scheduler(base, cfg).run_cycle(RecordingCache(base))
    base_per_pod = (time.perf_counter() - t) / max(len(r2.bindings), 1)
    benchmark.extra_info.update({"nodes": N_NODES, "devices": N_NODES * PER_NODE, "pending_pods": N_PODS,
                                 "bound": bound, "cycle_s": round(benchmark.stats.stats.mean, 3),
                                 "per_pod_us": round(per_pod * 1e6, 1),
                                 "device_plugin_per_pod_us": round(base_per_pod * 1e6, 1),
                                 "dra_over_device_plugin": round(per_pod / base_per_pod, 1)})
    print(f"\ncycle {benchmark.stats.stats.mean:.3f} s for {bound} DRA pods ({per_pod * 1e6:.0f} us/pod); "
          f"same pods as nvidia.com/gpu: {base_per_pod * 1e6:.0f} us/pod ({len(r2.bindings)} bound); "
          f"DRA costs {per_pod / base_per_pod:.1f}x")
