"""kai._fast.fgd: worked fragmentation examples, then the kernel against its reference."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai._fast import fgd as fast
from kai._fast.reference import fgd as ref

ANY = np.uint64(2**64 - 1)


def _types(rows):
    """rows: (cpu, mem, g or 0, ndev, models, weight) -> the kernel's type arrays."""
    gs = sorted({r[2] for r in rows if r[2] > 0})
    g_values = np.array(gs or [1.0], dtype=np.float64)
    return dict(
        g_values=g_values,
        t_cpu=np.array([r[0] for r in rows], dtype=np.float64),
        t_mem=np.array([r[1] for r in rows], dtype=np.float64),
        t_g=np.array([gs.index(r[2]) if r[2] > 0 else -1 for r in rows], dtype=np.int32),
        t_ndev=np.array([r[3] for r in rows], dtype=np.int32),
        t_models=np.array([r[4] for r in rows], dtype=np.uint64),
        t_weight=np.array([r[5] for r in rows], dtype=np.float64))


def _nodes(rows, g=8):
    """rows: (cpu_free, mem_free, [device free parts], model bit)."""
    dev = np.zeros((len(rows), g))
    for i, r in enumerate(rows):
        dev[i, :len(r[2])] = r[2]
    return dict(cpu_free=np.array([r[0] for r in rows], dtype=np.float64),
                mem_free=np.array([r[1] for r in rows], dtype=np.float64),
                dev_free=dev, node_model=np.array([r[3] for r in rows], dtype=np.uint64))


def _delta(mod, nodes, types, task, mask=None):
    n = len(nodes["cpu_free"])
    mask = np.ones(n, dtype=np.uint8) if mask is None else mask
    out = np.empty(n)
    dev = np.empty(n, dtype=np.int32)
    fit = mod.frag_delta(nodes["cpu_free"], nodes["mem_free"], nodes["dev_free"], nodes["node_model"], mask,
                         types["g_values"], types["t_cpu"], types["t_mem"], types["t_g"], types["t_ndev"],
                         types["t_models"], types["t_weight"], *task, out, dev)
    return fit, out, dev


def _frag(mod, nodes, types):
    out = np.empty(len(nodes["cpu_free"]))
    mod.node_fragmentation(nodes["cpu_free"], nodes["mem_free"], nodes["dev_free"], nodes["node_model"],
                           types["g_values"], types["t_cpu"], types["t_mem"], types["t_g"], types["t_ndev"],
                           types["t_models"], types["t_weight"], out)
    return out


@pytest.mark.parametrize("mod", [fast, ref], ids=["fast", "ref"])
class TestWorkedExamples:
    def test_fraction_sees_small_slices_as_fragment(self, mod):
        # one node, devices free 1.0, 0.3, 0.6; a single type asking 0.5 GPU:
        # the 0.3 slice is too small -> F = 0.3
        nodes = _nodes([(8000, 64, [1.0, 0.3, 0.6], 1)])
        types = _types([(1000, 1, 0.5, 1, ANY, 1.0)])
        assert _frag(mod, nodes, types)[0] == pytest.approx(0.3)

    def test_whole_gpu_type_sees_partial_devices_as_fragment(self, mod):
        nodes = _nodes([(8000, 64, [1.0, 0.3, 0.6], 1)])
        types = _types([(1000, 1, 1.0, 1, ANY, 1.0)])
        assert _frag(mod, nodes, types)[0] == pytest.approx(0.9)
        # needs two whole GPUs, only one is fully free: everything is fragment
        types2 = _types([(1000, 1, 1.0, 2, ANY, 1.0)])
        assert _frag(mod, nodes, types2)[0] == pytest.approx(1.9)

    def test_closed_node_is_all_fragment(self, mod):
        nodes = _nodes([(500, 64, [1.0, 1.0], 1),     # too little CPU
                        (8000, 64, [1.0, 1.0], 2)])   # wrong model
        types = _types([(1000, 1, 0.5, 1, 1, 1.0)])
        assert list(_frag(mod, nodes, types)) == pytest.approx([2.0, 2.0])

    def test_cpu_only_type_counts_all_free_gpu(self, mod):
        nodes = _nodes([(8000, 64, [1.0, 0.5], 1)])
        types = _types([(1000, 1, 0.0, 0, ANY, 1.0)])
        assert _frag(mod, nodes, types)[0] == pytest.approx(1.5)

    def test_weights_sum_the_types(self, mod):
        nodes = _nodes([(8000, 64, [1.0, 0.3, 0.6], 1)])
        types = _types([(1000, 1, 0.5, 1, ANY, 0.25), (1000, 1, 1.0, 1, ANY, 0.75)])
        assert _frag(mod, nodes, types)[0] == pytest.approx(0.25 * 0.3 + 0.75 * 0.9)

    def test_fraction_fills_the_slice_that_leaves_least_fragment(self, mod):
        # types: 0.5 (weight 1). Task 0.4. Devices 1.0 and 0.5.
        # on the 0.5 device: devices 1.0, 0.1 -> F = 0.1 (before 0) -> delta 0.1
        # on the 1.0 device: devices 0.6, 0.5 -> F = 0 -> delta 0
        nodes = _nodes([(8000, 64, [1.0, 0.5], 1)])
        types = _types([(1000, 1, 0.5, 1, ANY, 1.0)])
        fit, delta, dev = _delta(mod, nodes, types, (1000, 1, 0.4, 1, ANY))
        assert fit == 1 and delta[0] == pytest.approx(0.0) and dev[0] == 0
        # task 0.5 fills the 0.5 device exactly: no fragment either way; ties go to the fuller device
        fit, delta, dev = _delta(mod, nodes, types, (1000, 1, 0.5, 1, ANY))
        assert delta[0] == pytest.approx(0.0) and dev[0] == 1

    def test_node_choice_prefers_the_node_already_fragmented(self, mod):
        # type mix: whole GPUs. Task: 0.5 GPU. Node 0 empty (2 GPUs), node 1 has a 0.5 slice.
        nodes = _nodes([(8000, 64, [1.0, 1.0], 1), (8000, 64, [1.0, 0.5], 1)])
        types = _types([(1000, 1, 1.0, 1, ANY, 1.0)])
        _, delta, dev = _delta(mod, nodes, types, (1000, 1, 0.5, 1, ANY))
        # node 0: F 0 -> 0.5 ; node 1: F 0.5 -> 0 (the slice is used up)
        assert list(delta) == pytest.approx([0.5, -0.5])
        assert dev[1] == 1

    def test_infeasible_nodes_get_inf(self, mod):
        nodes = _nodes([(8000, 64, [1.0, 1.0], 1), (8000, 64, [0.5, 0.5], 1), (100, 64, [1.0], 1),
                        (8000, 64, [1.0, 1.0], 2)])
        types = _types([(1000, 1, 1.0, 1, ANY, 1.0)])
        fit, delta, _ = _delta(mod, nodes, types, (1000, 1, 1.0, 2, np.uint64(1)))
        assert fit == 1
        assert math.isfinite(delta[0]) and all(math.isinf(x) for x in delta[1:])
        fit, delta, _ = _delta(mod, nodes, types, (1000, 1, 1.0, 1, ANY), mask=np.array([0, 1, 1, 1], np.uint8))
        assert fit == 1 and math.isinf(delta[0]) and math.isfinite(delta[3])


@st.composite
def problems(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 30))
    g = draw(st.sampled_from([1, 2, 4, 8]))
    grid = np.array([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0])
    dev = rng.choice(grid, size=(n, g), p=[0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3])
    nodes = dict(cpu_free=rng.integers(0, 8, n).astype(np.float64) * 1000,
                 mem_free=rng.integers(0, 8, n).astype(np.float64),
                 dev_free=np.ascontiguousarray(dev),
                 node_model=(np.uint64(1) << rng.integers(0, 3, n).astype(np.uint64)))
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        kind = rng.integers(0, 3)
        gg = 0.0 if kind == 0 else (float(rng.choice([0.1, 0.25, 0.3, 0.5, 0.7])) if kind == 1 else 1.0)
        nd = 0 if kind == 0 else (1 if kind == 1 else int(rng.integers(1, 3)))
        models = ANY if rng.random() < 0.6 else np.uint64(rng.integers(1, 8))
        rows.append((float(rng.integers(0, 4) * 1000), float(rng.integers(0, 4)), gg, nd, models,
                     float(rng.random())))
    types = _types(rows)
    kind = draw(st.integers(0, 2))
    gpu = 0.0 if kind == 0 else (draw(st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.7])) if kind == 1 else 1.0)
    ndev = 0 if kind == 0 else (1 if kind == 1 else draw(st.integers(1, 3)))
    task = (float(rng.integers(0, 4) * 1000), float(rng.integers(0, 4)), gpu, ndev,
            ANY if draw(st.booleans()) else np.uint64(rng.integers(1, 8)))
    mask = (rng.random(n) < 0.8).astype(np.uint8)
    return nodes, types, task, mask


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_kernel_matches_reference(p):
    nodes, types, task, mask = p
    fit_f, d_f, dev_f = _delta(fast, nodes, types, task, mask)
    fit_r, d_r, dev_r = _delta(ref, nodes, types, task, mask)
    assert fit_f == fit_r
    assert np.array_equal(np.isinf(d_f), np.isinf(d_r))
    ok = np.isfinite(d_r)
    assert np.allclose(d_f[ok], d_r[ok], atol=1e-9)
    assert list(dev_f) == list(dev_r)
    assert np.allclose(_frag(fast, nodes, types), _frag(ref, nodes, types), atol=1e-9)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**32 - 1))
def test_cache_answers_like_a_fresh_call(p, seed):
    """A per-class cache gives the same answers while nodes change under it."""
    nodes, types, task, mask = p
    rng = np.random.default_rng(seed)
    cache = fast.FragCache()
    for _ in range(4):
        got = _delta_cached(nodes, types, task, mask, cache)
        want = _delta(fast, nodes, types, task, mask)
        assert got[0] == want[0]
        assert np.array_equal(got[1], want[1]) and list(got[2]) == list(want[2])
        n = rng.integers(0, len(mask))            # change one node
        nodes["dev_free"][n, 0] = rng.choice([0.0, 0.3, 1.0])
        nodes["cpu_free"][n] = rng.integers(0, 8) * 1000.0


def _delta_cached(nodes, types, task, mask, cache):
    n = len(nodes["cpu_free"])
    out = np.empty(n)
    dev = np.empty(n, dtype=np.int32)
    fit = fast.frag_delta(nodes["cpu_free"], nodes["mem_free"], nodes["dev_free"], nodes["node_model"], mask,
                          types["g_values"], types["t_cpu"], types["t_mem"], types["t_g"], types["t_ndev"],
                          types["t_models"], types["t_weight"], *task, out, dev, cache)
    return fit, out.copy(), dev.copy()


@pytest.mark.parametrize("mod", [fast, ref], ids=["fast", "ref"])
def test_device_view(mod):
    # node 0: group in slot 1 with 0.3 allocated, 2.0 idle GPUs -> slots 0 and 2 are whole
    # node 1: group fully releasing (not usable), 0 idle; node 2: no groups, 3 idle, width 4
    idle = np.array([2.0, 0.0, 3.0])
    used = np.array([[0.0, 0.3, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    alloc = used.copy()
    rel = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = np.full((3, 4), -1.0)
    mod.device_view(idle, used, alloc, rel, out)
    assert np.allclose(out, [[1.0, 0.7, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])


@pytest.mark.parametrize("mod", [fast, ref], ids=["fast", "ref"])
def test_band_scores(mod):
    delta = np.array([0.5, -0.5, np.inf, 0.0, -0.5])
    dev = np.array([[1.0, 1.0], [1.0, 0.5], [0.0, 0.0], [0.3, 0.0], [1.0, 1.0]])
    out = np.full(5, -1.0)
    assert mod.band_scores(delta, dev, 9.0, 1e-3, out) == 4
    # -0.5 -> 9, 0.5 -> 0, 0.0 -> 4.5; minus 1e-3 per free GPU; no fit -> 0
    assert np.allclose(out, [0.0 - 2e-3, 9.0 - 1.5e-3, 0.0, 4.5 - 0.3e-3, 9.0 - 2e-3])
    same = np.array([0.2, 0.2])
    mod.band_scores(same, dev[:2], 9.0, 0.0, out[:2])
    assert np.allclose(out[:2], [9.0, 9.0])
