"""kai._fast.domains: topology-domain filters and scores, worked examples, then kernel vs its
readable reference on random inputs (alone and inside placement.place)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai._fast import domains as fast
from kai._fast import placement
from kai._fast.reference import domains as ref
from kai._fast.reference import placement as ref_placement

I32 = np.int32


def dc(mod, n, specs, bootstrap=False):
    return mod.DomainConstraints(n, [dict(s) for s in specs], bootstrap)


def run(mod, n, specs, base=None, bootstrap=False):
    base = np.ones(n, np.uint8) if base is None else np.array(base, np.uint8)
    score = np.zeros(n)
    m = dc(mod, n, specs, bootstrap).filter_and_score(base, score)
    return list(np.asarray(m)), list(score)


# --- worked examples ---------------------------------------------------------------------

def test_anti_affinity_blocks_domains_with_a_matching_pod_and_passes_nodes_without_the_key():
    # nodes 0,1 in zone a (0), node 2 in zone b (1), node 3 unlabelled
    spec = dict(dom=np.array([0, 0, 1, -1], I32), counts=[1.0, 0.0], kind=fast.KIND_ANTI)
    assert run(fast, 4, [spec])[0] == [0, 0, 1, 1]


def test_affinity_needs_a_matching_pod_in_the_domain_unless_it_bootstraps():
    spec = dict(dom=np.array([0, 0, 1, -1], I32), counts=[0.0, 2.0], kind=fast.KIND_AFFINITY)
    assert run(fast, 4, [spec])[0] == [0, 0, 1, 0]
    empty = dict(spec, counts=[0.0, 0.0])
    assert run(fast, 4, [empty])[0] == [0, 0, 0, 0]                      # nobody to follow
    assert run(fast, 4, [empty], bootstrap=True)[0] == [1, 1, 1, 0]      # first of its kind: any labelled node


def test_spread_skew_against_the_smallest_eligible_domain_and_min_domains():
    # zones a, b, c with 2, 0, 1 matching pods; maxSkew 1; the task matches itself
    spec = dict(dom=np.array([0, 1, 2, -1], I32), counts=[2.0, 0.0, 1.0], kind=fast.KIND_SPREAD,
                self_inc=True, max_skew=1)
    assert run(fast, 4, [spec])[0] == [0, 1, 0, 0]            # a: 2+1-0=3, b: 1, c: 2>1, no key: out
    # zone b has no eligible node (e.g. excluded by node affinity): minimum over a and c is 1
    spec_b = dict(spec, dom_elig=np.array([1, 0, 1], np.uint8))
    assert run(fast, 4, [spec_b])[0] == [0, 1, 1, 0]
    # minDomains 3 with 2 eligible domains: the minimum counts as 0
    assert run(fast, 4, [dict(spec_b, min_domains=3)])[0] == [0, 1, 0, 0]


def test_score_adds_weight_per_pod_in_the_domain():
    spec = dict(dom=np.array([0, 1, -1], I32), counts=[3.0, 1.0], kind=fast.KIND_SCORE, weight=-2.0)
    assert run(fast, 3, [spec])[1] == [-6.0, -2.0, 0.0]


def test_soft_spread_prefers_the_emptier_domain_normalized_to_100():
    # two zones with 4 and 1 pods; log(2 + 2) weight; maxSkew 1
    spec = dict(dom=np.array([0, 1, -1], I32), counts=[4.0, 1.0], kind=fast.KIND_SPREAD_SCORE,
                max_skew=1, weight=1.0)
    mask, score = run(fast, 3, [spec])
    raw = [round(4 * np.log(4)), round(1 * np.log(4))]                     # 6, 1
    assert score == [np.floor(100 * (raw[0] + raw[1] - raw[0]) / raw[0]),
                     np.floor(100 * (raw[0] + raw[1] - raw[1]) / raw[0]), 0.0]
    assert mask == [1, 1, 1]


def test_a_run_counts_its_own_placements():
    # required anti-affinity to itself on hostname: 3 nodes -> 3 pods, the 4th fits nowhere
    n, r = 3, 5
    alloc = np.full((r, n), 8.0)
    a = placement.NodeArrays(alloc, alloc.copy(), np.zeros((r, n)), alloc.copy(), np.full(n, 8.0),
                             np.arange(n, dtype=I32))
    spec = dict(dom=np.arange(n, dtype=I32), counts=np.zeros(n), kind=fast.KIND_ANTI, self_inc=True)
    out = placement.Placements(4, r)
    req = np.array([1, 0, 1, 1, 0], dtype=np.float64)
    got = placement.place(a, np.ones(n, np.uint8), None, req, np.array([0, 2, 3], I32), 2, 0, False, True,
                          out, 0, fast.DomainConstraints(n, [spec]))
    assert got == 3 and sorted(out.nodes[:3].tolist()) == [0, 1, 2]


def test_bad_constraints_are_refused():
    with pytest.raises(ValueError, match="dom must be int32"):
        fast.DomainConstraints(3, [dict(dom=np.zeros(2, I32), counts=[0.0], kind=0)])
    with pytest.raises(ValueError, match="outside"):
        fast.DomainConstraints(2, [dict(dom=np.array([0, 5], I32), counts=[0.0], kind=0)])
    with pytest.raises(ValueError, match="unknown kind"):
        fast.DomainConstraints(1, [dict(dom=np.zeros(1, I32), counts=[0.0], kind=9)])


# --- kernel vs reference -----------------------------------------------------------------

@st.composite
def problems(draw):
    n = draw(st.integers(1, 25))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    specs = []
    for _ in range(draw(st.integers(1, 4))):
        n_dom = int(rng.integers(1, 6))
        dom = rng.integers(-1, n_dom, size=n).astype(I32)
        kind = int(draw(st.sampled_from([0, 1, 2, 3, 4])))
        spec = dict(dom=dom, counts=rng.integers(0, 3, size=n_dom).astype(np.float64), kind=kind,
                    self_inc=bool(rng.integers(0, 2)), weight=float(rng.choice([1.0, -1.0, 3.0, 1e5])),
                    max_skew=int(rng.integers(1, 3)), min_domains=int(rng.integers(1, 4)))
        if kind in (2, 4) and rng.integers(0, 2):
            spec["elig"] = (rng.random(n) < 0.8).astype(np.uint8)
            spec["dom_elig"] = (rng.random(n_dom) < 0.8).astype(np.uint8)
        specs.append(spec)
    base = (rng.random(n) < 0.8).astype(np.uint8)
    return n, specs, base, draw(st.booleans())


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(problems())
def test_kernel_equals_reference(p):
    n, specs, base, boot = p
    assert run(fast, n, specs, base, boot) == run(ref, n, specs, base, boot)


@SETTINGS
@given(problems(), st.integers(1, 6))
def test_place_with_constraints_equals_reference(p, count):
    n, specs, base, boot = p
    r = 5
    rng = np.random.default_rng(n)
    alloc = rng.integers(1, 6, size=(r, n)).astype(np.float64)
    res = {}
    for mod, pl in ((fast, placement), (ref, ref_placement)):
        a = placement.NodeArrays(alloc, alloc.copy(), np.zeros((r, n)), alloc.copy(), alloc[2].copy(),
                                 np.arange(n, dtype=I32))
        out = placement.Placements(count, r)
        kw = {"constraints": mod.DomainConstraints(n, [dict(s) for s in specs], boot)}
        got = pl.place(a, base, None, np.array([1, 0, 1, 1, 0], dtype=np.float64), np.array([0, 2, 3], I32),
                       2, 0, False, True, out, 0, **kw)
        res[pl] = (got, out.nodes[:got].tolist())
    assert res[placement] == res[ref_placement]
