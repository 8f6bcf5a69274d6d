"""kai._fast.placement against its readable reference, on random arrays (hypothesis)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai._fast import placement as fast
from kai._fast.reference import placement as ref

R = 5
GPU_COL = 2
EPS = 1e-9


@st.composite
def problems(draw):
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # small integer amounts make ties (and the name tie-break) frequent
    alloc = rng.integers(0, 9, size=(R, n)).astype(np.float64)
    alloc[:, rng.random(n) < 0.2] *= 0                       # some GPU-less / empty columns
    if draw(st.booleans()):
        alloc[GPU_COL, rng.random(n) < 0.5] = 0
    used = np.floor(alloc * rng.random((R, n)))
    releasing = np.floor(used * rng.random((R, n)))
    idle = alloc - used
    avail = idle + releasing
    mask = (rng.random(n) < draw(st.floats(0.3, 1.0))).astype(np.uint8)
    rank = rng.permutation(n).astype(np.int32)
    extra = None
    if draw(st.booleans()):
        extra = rng.integers(0, 3, size=n).astype(np.float64) * draw(st.sampled_from([1.0, 0.5, 1000.0]))
    req = rng.integers(0, 4, size=R).astype(np.float64)
    if draw(st.booleans()):
        req[GPU_COL] = 0
    req_cols = np.flatnonzero(req > 0).astype(np.int32)
    cpu_only = req[GPU_COL] == 0
    return dict(allocatable=np.ascontiguousarray(alloc), idle=np.ascontiguousarray(idle),
                releasing=np.ascontiguousarray(releasing), avail=np.ascontiguousarray(avail),
                gpu_capacity=np.ascontiguousarray(alloc[GPU_COL] + rng.integers(0, 2, n)),
                mask=mask, name_rank=rank, extra_score=extra, req=req, req_cols=req_cols,
                score_col=0 if cpu_only else GPU_COL,
                strategy=draw(st.sampled_from([fast.STRATEGY_BINPACK, fast.STRATEGY_SPREAD])),
                cpu_only=bool(cpu_only), gpu_col=GPU_COL, allow_pipeline=draw(st.booleans()),
                count=draw(st.integers(1, 5)))


def node_arrays(a):
    return fast.NodeArrays(a["allocatable"], a["idle"], a["releasing"], a["avail"], a["gpu_capacity"],
                           a["name_rank"], gpu_col=a["gpu_col"])


def run(mod, p):
    a = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    out = fast.Placements(a["count"], R)
    placed = mod.place(node_arrays(a), a["mask"], a["extra_score"], a["req"], a["req_cols"], a["score_col"],
                       a["strategy"], a["cpu_only"], a["allow_pipeline"], out)
    return placed, out.nodes[:placed], out.pipelined[:placed], out.undo[:placed], a


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_strategy_constants_match():
    assert fast.STRATEGY_BINPACK == ref.STRATEGY_BINPACK == 0
    assert fast.STRATEGY_SPREAD == ref.STRATEGY_SPREAD == 1


@SETTINGS
@given(problems())
def test_kernel_equals_reference(p):
    pf, nf, df, uf, af = run(fast, p)
    pr, nr, dr, ur, ar = run(ref, p)
    assert pf == pr
    assert nf.tolist() == nr.tolist()
    assert df.tolist() == dr.tolist()
    assert np.array_equal(uf, ur)
    for key in ("idle", "releasing", "avail"):
        assert np.array_equal(af[key], ar[key]), key


@SETTINGS
@given(problems())
def test_no_node_over_capacity_and_only_masked_nodes(p):
    placed, nodes, pipe, undo, a = run(fast, p)
    cols = p["req_cols"]
    assert (a["avail"][cols] >= -EPS).all()
    assert np.array_equal(a["avail"], a["idle"] + a["releasing"])
    for i, n in enumerate(nodes):
        assert p["mask"][n]
        if not p["allow_pipeline"]:
            assert not pipe[i]
    if not p["allow_pipeline"]:
        assert (a["idle"][cols] >= -EPS).all()
    # resources are conserved: what left idle+releasing is exactly placed x request
    taken = p["avail"] - a["avail"]
    assert np.allclose(taken.sum(axis=1), placed * p["req"] * (p["req"] > 0))
    # stops only when nothing more fits (or count reached)
    if placed < p["count"]:
        short = np.zeros(len(cols), dtype=np.int64)
        base = dict(a)
        if not p["allow_pipeline"]:
            base["avail"] = base["idle"]
        fits_any = fast.fit_counts(node_arrays(base), p["mask"], p["req"], cols, short)
        assert fits_any == 0


@SETTINGS
@given(problems())
def test_undo_restores_arrays(p):
    placed, nodes, pipe, undo, a = run(fast, p)
    for i in reversed(range(placed)):
        n = nodes[i]
        a["idle"][:, n] = undo[i, 0]
        a["releasing"][:, n] = undo[i, 1]
        a["avail"][:, n] = undo[i, 0] + undo[i, 1]
    for key in ("idle", "releasing", "avail"):
        assert np.array_equal(a[key], p[key])


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_independent_of_node_input_order(p, rnd):
    n = p["mask"].shape[0]
    perm = list(range(n))
    rnd.shuffle(perm)
    perm = np.array(perm)
    q = dict(p)
    for key in ("allocatable", "idle", "releasing", "avail"):
        q[key] = np.ascontiguousarray(p[key][:, perm])
    for key in ("gpu_capacity", "mask", "name_rank"):
        q[key] = np.ascontiguousarray(p[key][perm])
    if p["extra_score"] is not None:
        q["extra_score"] = np.ascontiguousarray(p["extra_score"][perm])
    placed1, nodes1, pipe1, _, _ = run(fast, p)
    placed2, nodes2, pipe2, _, _ = run(fast, q)
    assert placed1 == placed2
    # compare by node "name" (its rank), not by column index
    assert p["name_rank"][nodes1].tolist() == q["name_rank"][nodes2].tolist()
    assert pipe1.tolist() == pipe2.tolist()


@SETTINGS
@given(problems())
def test_fit_counts_equals_reference(p):
    k = len(p["req_cols"])
    sf, sr = np.full(k, 99, dtype=np.int64), np.full(k, 99, dtype=np.int64)
    ff = fast.fit_counts(node_arrays(p), p["mask"], p["req"], p["req_cols"], sf)
    fr = ref.fit_counts(node_arrays(p), p["mask"], p["req"], p["req_cols"], sr)
    assert ff == fr and sf.tolist() == sr.tolist()
    brute = sum(1 for n in range(len(p["mask"])) if p["mask"][n]
                and all(p["avail"][c, n] >= p["req"][c] - EPS for c in p["req_cols"]))
    assert ff == brute


# --- worked examples: the arithmetic behind each choice ------------------------------------

def _arrays(alloc, used=None, releasing=None):
    alloc = np.ascontiguousarray(np.array(alloc, dtype=np.float64))
    used = np.zeros_like(alloc) if used is None else np.array(used, dtype=np.float64)
    rel = np.zeros_like(alloc) if releasing is None else np.array(releasing, dtype=np.float64)
    idle = np.ascontiguousarray(alloc - used)
    return alloc, idle, np.ascontiguousarray(rel), np.ascontiguousarray(idle + rel)


def _place_one(alloc, idle, rel, avail, req, strategy, allow_pipeline=True, extra=None, rank=None, mask=None):
    n = alloc.shape[1]
    req = np.array(req, dtype=np.float64)
    cols = np.flatnonzero(req > 0).astype(np.int32)
    out = fast.Placements(1, alloc.shape[0])
    cpu_only = req[GPU_COL] == 0
    a = fast.NodeArrays(alloc, idle, rel, avail, alloc[GPU_COL].copy(),
                        np.arange(n, dtype=np.int32) if rank is None else np.array(rank, np.int32))
    placed = fast.place(a, np.ones(n, np.uint8) if mask is None else np.array(mask, np.uint8),
                        extra, req, cols, 0 if cpu_only else GPU_COL, strategy, bool(cpu_only), allow_pipeline, out)
    return (int(out.nodes[0]) if placed else -1), bool(out.pipelined[0])


GPU_NODES = [[8, 8, 8], [0, 0, 0], [4, 8, 2], [10, 10, 10], [0, 0, 0]]   # cpu, mem, gpu, pods, eph x 3 nodes


def test_binpack_prefers_fullest_gpu_node_and_spread_the_emptiest():
    alloc, idle, rel, avail = _arrays(GPU_NODES, used=[[0] * 3, [0] * 3, [2, 6, 0], [0] * 3, [0] * 3])
    # free gpus (4-2, 8-6, 2-0) = 2, 2, 2
    assert avail[GPU_COL].tolist() == [2, 2, 2]
    # tie on score -> lowest name rank
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 1, 1, 0], 0) == (0, False)
    alloc, idle, rel, avail = _arrays(GPU_NODES, used=[[0] * 3, [0] * 3, [3, 2, 0], [0] * 3, [0] * 3])
    # free gpus 1, 6, 2: binpack picks the least free, spread the largest free/capacity (6/8 vs 1/4 vs 2/2)
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 1, 1, 0], 0)[0] == 0
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 1, 1, 0], 1)[0] == 2


def test_availability_band_beats_placement_and_pipelining():
    # node 0 fits only with releasing resources; node 1 fits on idle -> +100 wins
    alloc, idle, rel, avail = _arrays([[8, 8], [0, 0], [4, 4], [10, 10], [0, 0]],
                                      used=[[0, 0], [0, 0], [4, 3], [0, 0], [0, 0]],
                                      releasing=[[0, 0], [0, 0], [4, 0], [0, 0], [0, 0]])
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 1, 1, 0], 0) == (1, False)
    # two GPUs: only node 0 (releasing) can host it -> pipelined, consuming releasing first
    i2, r2, a2 = idle.copy(), rel.copy(), avail.copy()
    assert _place_one(alloc, i2, r2, a2, [0, 0, 2, 1, 0], 0) == (0, True)
    assert r2[GPU_COL, 0] == 2 and i2[GPU_COL, 0] == 0
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 2, 1, 0], 0, allow_pipeline=False)[0] == -1


def test_cpu_only_task_prefers_gpu_less_node():
    alloc, idle, rel, avail = _arrays([[8, 8], [0, 0], [4, 0], [10, 10], [0, 0]])
    assert _place_one(alloc, idle, rel, avail, [1, 0, 0, 1, 0], 0)[0] == 1     # +10 resourcetype


def test_extra_score_and_mask():
    alloc, idle, rel, avail = _arrays([[8, 8, 8], [0] * 3, [4, 4, 4], [10] * 3, [0] * 3])
    extra = np.array([0.0, 0.0, 1000.0])
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 1, 1, 0], 0, extra=extra)[0] == 2
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 1, 1, 0], 0, extra=extra,
                      mask=[1, 1, 0])[0] == 0
    assert _place_one(alloc, idle.copy(), rel.copy(), avail.copy(), [0, 0, 1, 1, 0], 0,
                      rank=[2, 0, 1])[0] == 1


def test_run_of_tasks_fills_one_node_before_the_next_under_binpack():
    alloc, idle, rel, avail = _arrays([[8, 8], [0, 0], [4, 4], [10, 10], [0, 0]])
    req = np.array([0, 0, 1, 1, 0], dtype=np.float64)
    out = fast.Placements(6, R)
    a = fast.NodeArrays(alloc, idle, rel, avail, alloc[GPU_COL].copy(), np.arange(2, dtype=np.int32))
    placed = fast.place(a, np.ones(2, np.uint8), None, req, np.array([2, 3], np.int32), GPU_COL,
                        fast.STRATEGY_BINPACK, False, True, out)
    assert placed == 6
    assert out.nodes.tolist() == [0, 0, 0, 0, 1, 1]
    out2 = fast.Placements(6, R)
    alloc, idle, rel, avail = _arrays([[8, 8], [0, 0], [4, 4], [10, 10], [0, 0]])
    a = fast.NodeArrays(alloc, idle, rel, avail, alloc[GPU_COL].copy(), np.arange(2, dtype=np.int32))
    fast.place(a, np.ones(2, np.uint8), None, req, np.array([2, 3], np.int32), GPU_COL,
               fast.STRATEGY_SPREAD, False, True, out2)
    assert out2.nodes.tolist() == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("mod", [fast, ref], ids=["kernel", "reference"])
def test_zero_nodes_places_nothing(mod):
    z = np.zeros((R, 0))
    a = fast.NodeArrays(z, z.copy(), z.copy(), z.copy(), np.zeros(0), np.zeros(0, np.int32))
    req = np.array([1, 0, 0, 1, 0], dtype=np.float64)
    cols = np.array([0, 3], dtype=np.int32)
    assert mod.place(a, np.zeros(0, np.uint8), None, req, cols, 0, 0, True, True, fast.Placements(2, R)) == 0
    short = np.zeros(2, dtype=np.int64)
    assert mod.fit_counts(a, np.zeros(0, np.uint8), req, cols, short) == 0 and short.tolist() == [0, 0]


# --- the checking wrapper: a wrong shape or dtype is an error, never an out-of-bounds read ----

def _good():
    alloc, idle, rel, avail = _arrays([[8, 8], [0, 0], [4, 4], [10, 10], [0, 0]])
    return dict(allocatable=alloc, idle=idle, releasing=rel, avail=avail, gpu_capacity=alloc[GPU_COL].copy(),
                name_rank=np.arange(2, dtype=np.int32))


@pytest.mark.parametrize("key,bad,match", [
    ("idle", np.zeros((R, 3)), "idle: shape"),
    ("releasing", np.zeros((R - 1, 2)), "releasing: shape"),
    ("avail", np.zeros((R, 2), dtype=np.float32), "avail: expected dtype float64"),
    ("gpu_capacity", np.zeros(3), "gpu_capacity: shape"),
    ("name_rank", np.arange(2, dtype=np.int64), "name_rank: expected dtype int32"),
    ("idle", np.asfortranarray(np.zeros((R, 2))), "idle: must be C-contiguous"),
    ("allocatable", [[1.0]], "allocatable: expected a numpy array"),
])
def test_node_arrays_reject_bad_shapes(key, bad, match):
    kw = _good()
    kw[key] = bad
    with pytest.raises((ValueError, TypeError), match=match):
        fast.NodeArrays(**kw)


@pytest.mark.parametrize("arg,bad,match", [
    ("mask", np.ones(3, np.uint8), "mask: shape"),
    ("mask", np.ones(2, bool), "mask: expected dtype uint8"),
    ("extra", np.zeros(5), "extra_score: shape"),
    ("req", np.zeros(R - 1), "req: shape"),
    ("req_cols", np.array([0, R], np.int32), "req_cols: expected int32 columns"),
    ("req_cols", np.array([-1], np.int32), "req_cols: expected int32 columns"),
    ("score_col", R, "score_col"),
])
def test_place_rejects_bad_task_arguments(arg, bad, match):
    kw = _good()
    a = fast.NodeArrays(**kw)
    args = dict(mask=np.ones(2, np.uint8), extra=None, req=np.array([0, 0, 1, 1, 0], dtype=np.float64),
                req_cols=np.array([2, 3], np.int32), score_col=GPU_COL)
    args[arg] = bad
    before = kw["idle"].copy()
    with pytest.raises(ValueError, match=match):
        fast.place(a, args["mask"], args["extra"], args["req"], args["req_cols"], args["score_col"],
                   fast.STRATEGY_BINPACK, False, True, fast.Placements(1, R))
    assert np.array_equal(kw["idle"], before)           # nothing was touched


def test_place_rejects_output_of_another_width():
    a = fast.NodeArrays(**_good())
    with pytest.raises(ValueError, match="out"):
        fast.place(a, np.ones(2, np.uint8), None, np.array([0, 0, 1, 1, 0], dtype=np.float64),
                   np.array([2, 3], np.int32), GPU_COL, 0, False, True, fast.Placements(1, R + 1))


@SETTINGS
@given(problems())
def test_take_is_a_task_s_placement_kept_apart_from_the_buffer(p):
    """``Placements.take(i)``: task i's node, pipelined flag and undo rows, the rows a copy
    that the buffer's next use does not change."""
    a = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    out = fast.Placements(a["count"], R)
    placed = fast.place(node_arrays(a), a["mask"], a["extra_score"], a["req"], a["req_cols"], a["score_col"],
                        a["strategy"], a["cpu_only"], a["allow_pipeline"], out)
    kept = [out.take(i) for i in range(placed)]
    saved = out.undo.copy()
    for i, (node, pipelined, undo) in enumerate(kept):
        assert node == int(out.nodes[i]) and pipelined == bool(out.pipelined[i])
        assert undo.shape == (2, R) and np.array_equal(undo, saved[i])
    out.undo[:] = np.nan
    for i, (_, _, undo) in enumerate(kept):
        assert np.array_equal(undo, saved[i])
    with pytest.raises(IndexError):
        out.take(a["count"])
