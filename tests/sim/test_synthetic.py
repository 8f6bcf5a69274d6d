"""kai.sim.synthetic: the openb-like trace stand-in has the trace's node types and request mix."""
import numpy as np
import pytest

from kai.sim import synthetic as S


def _fraction_pods(pods):
    return (pods.num_gpu == 1) & (pods.gpu_milli > 0) & (pods.gpu_milli < 1000)


def test_openb_like_cluster_has_the_trace_node_types_in_their_shares():
    nodes, _ = S.openb_like(n_nodes=1213)
    assert len(nodes) == 1213 and nodes.total_gpu == 6212
    types = {}
    for c, m, g, model in zip(nodes.cpu, nodes.mem, nodes.gpu, nodes.model):
        types[(int(c // 1000), int(m // 1024), int(g), model)] = types.get((int(c // 1000), int(m // 1024), int(g), model), 0) + 1
    assert types == {(c, m, g, model): k for c, m, g, model, k in S.OPENB_NODE_TYPES}
    small, _ = S.openb_like(n_nodes=61)
    assert len(small) == 61 and small.model.count("G2") == round(61 * 549 / 1213)


def test_openb_like_default_pod_mix():
    _, pods = S.openb_like(seed=3)
    assert len(pods) == 8152
    n = len(pods)
    assert (pods.num_gpu == 0).mean() == pytest.approx(S.OPENB_KINDS["cpu"], abs=0.02)
    assert _fraction_pods(pods).mean() == pytest.approx(S.OPENB_KINDS["frac"], abs=0.02)
    assert set(np.unique(pods.num_gpu)) <= {0, 1, 2, 4, 8}
    assert set(pods.gpu_milli[_fraction_pods(pods)]) <= {m for m, _ in S.OPENB_FRACTIONS}
    assert all(s == () for s in pods.spec)
    assert len(set(pods.name)) == n


@pytest.mark.parametrize("trace,check", [
    ("gpushare100", lambda p: p.gpu[_fraction_pods(p)].sum() / p.gpu.sum() == pytest.approx(1.0)),
    ("gpushare40", lambda p: p.gpu[_fraction_pods(p)].sum() / p.gpu.sum() == pytest.approx(0.4, abs=0.04)),
    ("multigpu50", lambda p: p.gpu[p.num_gpu > 1].sum() / p.gpu.sum() == pytest.approx(0.5, abs=0.04)),
    ("gpuspec33", lambda p: np.mean([bool(s) for s, g in zip(p.spec, p.num_gpu) if g > 0])
     == pytest.approx(0.33, abs=0.03)),
])
def test_openb_like_variants_shift_the_mix_as_their_names_say(trace, check):
    _, pods = S.openb_like(trace, seed=1)
    assert check(pods)
    assert all(s == () for s, g in zip(pods.spec, pods.num_gpu) if g == 0)   # CPU pods name no GPU model


def test_openb_like_is_seeded_and_rejects_unknown_names():
    a, b, c = (S.openb_like(seed=s)[1] for s in (5, 5, 6))
    assert np.array_equal(a.cpu, b.cpu) and np.array_equal(a.gpu_milli, b.gpu_milli)
    assert not np.array_equal(a.cpu, c.cpu)
    with pytest.raises(ValueError, match="no synthetic stand-in.*cpu050"):
        S.openb_like("cpu050")
    with pytest.raises(ValueError, match="not a percentage"):
        S.openb_like("gpushare150")
