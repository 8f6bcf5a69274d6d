"""Benchmark of kai._fast.proportion.divide_fair_share against its pure-Python reference.

1,000 queues in 3 levels (10 departments x 10 projects x 10 leaf queues) over 3 resources
(GPU devices, CPU millicores, memory bytes); target <= 5 ms per call for the kernel.

    pytest bench/bench_fast_proportion.py -p no:cacheprovider --benchmark-enable
    KAI_BENCH_SMOKE=1 pytest bench/bench_fast_proportion.py -p no:cacheprovider   # 3 x 3 x 3

The kernel benchmark also times the reference in the same run and records both, and their
ratio, in ``benchmark.extra_info``.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from kai._fast import proportion as fast
from kai._fast.reference import proportion as ref

SMOKE = os.environ.get("KAI_BENCH_SMOKE", "") not in ("", "0")
FANOUT = 3 if SMOKE else 10
LEVELS = 3
TARGET_MS = 5.0


def make_tree(fanout=FANOUT, levels=LEVELS, seed=7):
    """A full tree ``fanout ** levels`` leaves deep, parents listed before their children."""
    rng = np.random.default_rng(seed)
    parent = []
    frontier = [-1]
    for _ in range(levels):
        nxt = []
        for p in frontier:
            for _ in range(fanout):
                parent.append(p)
                nxt.append(len(parent) - 1)
        frontier = nxt
    n = len(parent)
    parent = np.array(parent, dtype=np.int32)
    leaf = np.ones(n, dtype=bool)
    leaf[parent[parent >= 0]] = False
    n_leaves = int(leaf.sum())

    # leaf requests: GPUs (some fractional), CPU millicores, memory bytes
    own = np.zeros((n, 3))
    own[leaf, 0] = rng.integers(0, 16, n_leaves) + rng.choice([0, 0, 0, 0.5], n_leaves)
    own[leaf, 1] = rng.integers(0, 64_000, n_leaves)
    own[leaf, 2] = rng.integers(0, 256, n_leaves) * 1e9
    request = fast.aggregate_to_parents(parent, own)

    capacity = np.array([0.6, 0.6, 0.6]) * request[parent < 0].sum(axis=0)
    capacity = np.floor(capacity)
    # quotas: about half of the parent's share spread over the children, some -1 / 0
    deserved = np.zeros((n, 3))
    depth = np.zeros(n, dtype=int)
    for i in range(n):
        if parent[i] >= 0:
            depth[i] = depth[parent[i]] + 1
    deserved = np.floor(capacity / (fanout ** (depth[:, None] + 1)) * rng.uniform(0, 1, (n, 3)))
    deserved[rng.uniform(size=(n, 3)) < 0.05] = -1
    limit = np.where(rng.uniform(size=(n, 3)) < 0.2,
                     np.floor(request * rng.uniform(0.3, 1.2, (n, 3))), -1.0)
    weight = rng.choice([0.0, 1.0, 1.0, 2.0, 3.0], size=(n, 3))
    usage = np.where(rng.uniform(size=(n, 3)) < 0.5, rng.uniform(0, 0.05, (n, 3)), 0.0)
    priority = rng.choice([50, 100, 100, 125], size=n).astype(np.int64)
    order_key = rng.permutation(n).astype(np.int64)
    return dict(parent=parent, priority=priority, order_key=order_key, deserved=deserved,
                limit=limit, weight=weight, request=request, usage=usage, capacity=capacity,
                k_value=1.0)


@pytest.fixture(scope="module")
def tree():
    return make_tree()


def _min_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_divide_fair_share_kernel(benchmark, tree):
    out = np.zeros(tree["deserved"].shape)
    result = benchmark(fast.divide_fair_share, **tree, fair_share_out=out)
    expected = ref.divide_fair_share(**tree, fair_share_out=np.zeros_like(out))
    assert np.array_equal(result, expected)

    n = tree["parent"].shape[0]
    ref_s = _min_time(lambda: ref.divide_fair_share(**tree, fair_share_out=np.zeros_like(out)),
                      repeat=3)
    kernel_s = (benchmark.stats.stats.min if benchmark.stats is not None else
                _min_time(lambda: fast.divide_fair_share(**tree, fair_share_out=out), 20))
    benchmark.extra_info.update(
        queues=n, resources=3, smoke=SMOKE, target_ms=TARGET_MS,
        kernel_min_ms=round(kernel_s * 1e3, 4), reference_min_ms=round(ref_s * 1e3, 3),
        speedup_vs_reference=round(ref_s / kernel_s, 1))
    print(f"\ndivide_fair_share Q={n} R=3: kernel {kernel_s * 1e3:.3f} ms, "
          f"reference {ref_s * 1e3:.1f} ms, ratio {ref_s / kernel_s:.0f}x")
    if not SMOKE:
        assert kernel_s * 1e3 <= TARGET_MS


def test_divide_fair_share_reference(benchmark, tree):
    out = np.zeros(tree["deserved"].shape)
    benchmark.pedantic(ref.divide_fair_share, kwargs=dict(**tree, fair_share_out=out),
                       rounds=3 if SMOKE else 5, iterations=1)
    benchmark.extra_info.update(queues=int(tree["parent"].shape[0]), resources=3, smoke=SMOKE)


def test_dominant_resource_share_kernel(benchmark, tree):
    n = tree["parent"].shape[0]
    fair = fast.divide_fair_share(**tree, fair_share_out=np.zeros((n, 3)))
    share = fast.allocatable_share(tree["deserved"], fair, tree["limit"], np.zeros((n, 3)))
    allocated = tree["request"] * 0.7
    out = np.zeros(n)
    benchmark(fast.dominant_resource_share, allocated, share, tree["capacity"], out)
    expected = ref.dominant_resource_share(allocated, share, tree["capacity"], np.zeros(n))
    assert np.array_equal(out, expected)
    benchmark.extra_info.update(queues=int(n), resources=3, smoke=SMOKE)
