"""kai._fast.gpusharing against its readable reference, on random arrays (hypothesis)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai._fast import gpusharing as fast
from kai._fast.placement import NodeArrays
from kai._fast.reference import gpusharing as ref

R = 4
GPU_COL = 2
EPS = 1e-9
PORTIONS = (0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 1.0)


def random_state(rng, n, d):
    """Consistent node arrays and groups built by charging random fractions with the reference."""
    alloc = rng.integers(0, 9, size=(R, n)).astype(np.float64)
    alloc[GPU_COL] = rng.integers(0, d + 1, size=n)
    idle = alloc.copy()
    releasing = np.zeros((R, n))
    avail = idle.copy()
    used = np.zeros((n, d))
    dalloc = np.zeros((n, d))
    drel = np.zeros((n, d))
    from_rel = np.zeros((n, d), dtype=np.uint8)
    for node in range(n):
        gpus = int(alloc[GPU_COL, node])
        for slot in range(gpus):
            roll = rng.random()
            if roll < 0.3:
                continue                                  # free device
            if roll < 0.45:                               # a whole-GPU pod, maybe releasing
                idle[GPU_COL, node] -= 1
                if rng.random() < 0.4:
                    releasing[GPU_COL, node] += 1
                avail[GPU_COL, node] = idle[GPU_COL, node] + releasing[GPU_COL, node]
                continue
            for _ in range(rng.integers(1, 4)):
                p = float(rng.choice(PORTIONS[:-1]))
                if dalloc[node, slot] + p > 1 + EPS:
                    break
                kind = ref.KIND_RELEASING if rng.random() < 0.35 else ref.KIND_ALLOCATED
                ref.update_group(idle, releasing, avail, used, dalloc, drel, from_rel, node, slot, p,
                                 kind, 1.0, False, GPU_COL)
        for c in range(R):
            if c != GPU_COL:
                u = np.floor(alloc[c, node] * rng.random())
                r = np.floor(u * rng.random())
                idle[c, node] = alloc[c, node] - u
                releasing[c, node] = r
                avail[c, node] = idle[c, node] + r
    return alloc, idle, releasing, avail, used, dalloc, drel, from_rel


@st.composite
def problems(draw):
    n = draw(st.integers(1, 25))
    d = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    alloc, idle, releasing, avail, used, dalloc, drel, from_rel = random_state(rng, n, d)
    req = rng.integers(0, 3, size=R).astype(np.float64)
    req[GPU_COL] = 0
    if draw(st.booleans()):
        portion = np.full(n, float(rng.choice(PORTIONS)))
    else:
        portion = rng.choice([0.0, 0.05, 0.25, 0.5, 0.8, 1.5], size=n).astype(np.float64)
    extra = None
    if draw(st.booleans()):
        extra = rng.integers(0, 3, size=n).astype(np.float64) * draw(st.sampled_from([1.0, 0.5, 100.0]))
    return dict(allocatable=alloc, idle=idle, releasing=releasing, avail=avail,
                gpu_capacity=np.ascontiguousarray(alloc[GPU_COL] + rng.integers(0, 2, n)),
                mask=(rng.random(n) < draw(st.floats(0.3, 1.0))).astype(np.uint8),
                name_rank=rng.permutation(n).astype(np.int32), extra_score=extra, req=req,
                req_cols=np.flatnonzero(req > 0).astype(np.int32), portion=portion,
                num_devices=draw(st.integers(1, 3)), dev_used=used, dev_alloc=dalloc, dev_rel=drel,
                gpu_col=GPU_COL, strategy=draw(st.sampled_from([0, 1])),
                gpu_order=draw(st.sampled_from([0, 1, 2])),
                sharing_score=draw(st.sampled_from([0.0, 1000.0])),
                allow_pipeline=draw(st.booleans()))


def arrays(p):
    n, d = p["dev_used"].shape
    return NodeArrays(p["allocatable"], p["idle"], p["releasing"], p["avail"], p["gpu_capacity"], p["name_rank"],
                      p["dev_used"], p["dev_alloc"], p["dev_rel"], np.zeros((n, d), dtype=np.uint8), p["gpu_col"])


def task_args(p):
    return (arrays(p), p["mask"], p["extra_score"], p["req"], p["req_cols"], p["portion"], p["num_devices"],
            p["strategy"], p["gpu_order"], p["sharing_score"], p["allow_pipeline"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_choose_node_matches_reference(p):
    out_f = np.full(p["num_devices"], 99, dtype=np.int32)
    out_r = np.full(p["num_devices"], 99, dtype=np.int32)
    got = fast.choose_node(*task_args(p), out_devs=out_f)
    want = ref.choose_node(*task_args(p), out_devs=out_r)
    assert got == want
    if got[0] >= 0:
        assert list(out_f) == list(out_r)
        slots = [s for s in out_f if s >= 0]
        assert len(set(slots)) == len(slots)          # distinct devices


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_update_group_matches_reference_and_undoes(seed):
    rng = np.random.default_rng(seed)
    n, d = 4, 3
    state_f = random_state(rng, n, d)[1:]
    state_r = tuple(a.copy() for a in state_f)
    before = tuple(a.copy() for a in state_f)
    ops = []
    for _ in range(12):
        node, slot = int(rng.integers(0, n)), int(rng.integers(0, d))
        p = float(rng.choice(PORTIONS[:-1]))
        kind = int(rng.integers(0, 3))
        from_rel = bool(rng.integers(0, 2))
        fast.update_group(*state_f, node, slot, p, kind, 1.0, from_rel, GPU_COL)
        ref.update_group(*state_r, node, slot, p, kind, 1.0, from_rel, GPU_COL)
        ops.append((node, slot, p, kind))
        for a, b in zip(state_f, state_r):
            np.testing.assert_allclose(a, b, atol=1e-12)
    for node, slot, p, kind in reversed(ops):   # removing in reverse gives the start back
        fast.update_group(*state_f, node, slot, p, kind, -1.0, False, GPU_COL)
    for a, b in zip(state_f, before):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_group_lifecycle_moves_whole_devices():
    idle = np.array([[0.0], [0.0], [2.0], [0.0]])
    rel = np.zeros((4, 1))
    avail = idle + rel
    used, dalloc, drel = np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2))
    fr = np.zeros((1, 2), dtype=np.uint8)
    st_ = (idle, rel, avail, used, dalloc, drel, fr)
    fast.update_group(*st_, 0, 0, 0.5, fast.KIND_ALLOCATED, 1.0, False, GPU_COL)
    assert idle[GPU_COL, 0] == 1 and rel[GPU_COL, 0] == 0           # the group takes one device
    fast.update_group(*st_, 0, 0, 0.25, fast.KIND_ALLOCATED, 1.0, False, GPU_COL)
    assert idle[GPU_COL, 0] == 1
    # evict both: every fraction releasing -> the device is releasing
    for p in (0.5, 0.25):
        fast.update_group(*st_, 0, 0, p, fast.KIND_ALLOCATED, -1.0, False, GPU_COL)
        fast.update_group(*st_, 0, 0, p, fast.KIND_RELEASING, 1.0, False, GPU_COL)
    assert idle[GPU_COL, 0] == 1 and rel[GPU_COL, 0] == 1 and avail[GPU_COL, 0] == 2
    # pipelining a fraction into it: no longer a whole releasing device
    fast.update_group(*st_, 0, 0, 0.5, fast.KIND_PIPELINED, 1.0, False, GPU_COL)
    assert rel[GPU_COL, 0] == 0
    # a new group created by pipelining onto a releasing device takes it from releasing
    rel[GPU_COL, 0] = 1
    avail[GPU_COL, 0] = idle[GPU_COL, 0] + 1
    fast.update_group(*st_, 0, 1, 0.3, fast.KIND_PIPELINED, 1.0, True, GPU_COL)
    assert rel[GPU_COL, 0] == 0 and idle[GPU_COL, 0] == 1
    fast.update_group(*st_, 0, 1, 0.3, fast.KIND_PIPELINED, -1.0, False, GPU_COL)
    assert rel[GPU_COL, 0] == 1 and used[0, 1] == 0 and fr[0, 1] == 0


def test_zero_nodes_and_zero_devices():
    z = np.zeros((R, 0))
    out = np.zeros(1, dtype=np.int32)
    a = NodeArrays(z, z.copy(), z.copy(), z.copy(), np.zeros(0), np.zeros(0, dtype=np.int32), gpu_col=GPU_COL)
    got = fast.choose_node(a, np.zeros(0, dtype=np.uint8), None, np.zeros(R), np.zeros(0, dtype=np.int32),
                           np.zeros(0), 1, 0, 1, 1000.0, True, out)
    assert got == (-1, False)
    one = np.zeros((R, 1))
    a = NodeArrays(one, one.copy(), one.copy(), one.copy(), np.zeros(1), np.zeros(1, dtype=np.int32), gpu_col=GPU_COL)
    got = fast.choose_node(a, np.ones(1, dtype=np.uint8), None, np.zeros(R), np.zeros(0, dtype=np.int32),
                           np.full(1, 0.5), 1, 0, 1, 1000.0, True, out)
    assert got == (-1, False)


def test_choose_node_and_update_group_check_their_arguments():
    one = np.zeros((R, 1))
    a = NodeArrays(one, one.copy(), one.copy(), one.copy(), np.zeros(1), np.zeros(1, dtype=np.int32),
                   np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2), np.uint8), GPU_COL)
    out = np.zeros(1, dtype=np.int32)
    with pytest.raises(ValueError, match="portion"):
        fast.choose_node(a, np.ones(1, np.uint8), None, np.zeros(R), np.zeros(0, np.int32), np.full(3, 0.5),
                         1, 0, 1, 0.0, True, out)
    with pytest.raises(ValueError, match="mask"):
        fast.choose_node(a, np.ones(2, np.uint8), None, np.zeros(R), np.zeros(0, np.int32), np.full(1, 0.5),
                         1, 0, 1, 0.0, True, out)
    st_ = (one.copy(), one.copy(), one.copy(), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)),
           np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError, match="outside"):
        fast.update_group(*st_, 0, 2, 0.5, fast.KIND_ALLOCATED, 1.0, False, GPU_COL)
    with pytest.raises(ValueError, match="outside"):
        fast.update_group(*st_, 1, 0, 0.5, fast.KIND_ALLOCATED, 1.0, False, GPU_COL)
    with pytest.raises(ValueError, match="same"):
        fast.update_group(one.copy(), np.zeros((R, 2)), *st_[2:], 0, 0, 0.5, fast.KIND_ALLOCATED, 1.0, False, GPU_COL)
