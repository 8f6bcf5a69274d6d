"""DRA pod decision at 1,000 nodes x 8 GPUs (issue 10: <= 100 us per decision).

A decision is what the allocate action will do per pod with claims: the feasibility mask over
all nodes (kai.dra.allocator.DraAllocator.feasible) and the device pick on the chosen node
(allocate), undone afterwards so every round sees the same half-used cluster. Two pods:
one claim for 2 GPUs of a class (``device.driver == ...``), and one claim whose request adds a
capacity selector (``memory.compareTo(quantity("40Gi")) >= 0``, vectorized) plus a second
request tied by a matchAttribute constraint (exact search on candidate nodes). The baseline
in the same run is the same decision through the pure-Python reference kernels
(kai/_fast/reference/dra.py), on a tenth of the decisions.
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
