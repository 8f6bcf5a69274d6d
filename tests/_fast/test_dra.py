"""kai._fast.dra against its readable reference on random problems (hypothesis), plus the
invariants every pick must hold: devices reachable, matching, not double-booked, constraints."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai._fast import dra as fast
from kai._fast.reference import dra as ref


@st.composite
def problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    N = draw(st.integers(1, 5))
    local = rng.integers(0, 5, size=N)
    S = draw(st.integers(0, 2))
    n_net = draw(st.integers(0, 4)) if S else 0
    D = int(local.sum()) + n_net
    dev_node = np.concatenate([np.repeat(np.arange(N, dtype=np.int32), local),
                               np.full(n_net, -1, dtype=np.int32)]).astype(np.int32)
    dev_scope = np.concatenate([np.full(int(local.sum()), -1), rng.integers(0, max(S, 1), size=n_net)]).astype(np.int32)
    scope_nodes = (rng.random((S, N)) < 0.7).astype(np.uint8)
    node_start = np.zeros(N + 1, dtype=np.int32)
    node_start[1:] = np.cumsum(local)
    C = draw(st.integers(1, 2))
    Q = draw(st.integers(1, 3))
    req_claim = np.sort(rng.integers(0, C, size=Q)).astype(np.int32)
    req_claim[0] = 0
    alts_per = rng.integers(1, 3, size=Q)
    req_alt_start = np.zeros(Q + 1, dtype=np.int32)
    req_alt_start[1:] = np.cumsum(alts_per)
    A = int(req_alt_start[-1])
    cand = (rng.random((A, max(D, 0))) < draw(st.floats(0.3, 1.0))).astype(np.uint8).reshape(A, D)
    alt_count = rng.integers(1, 4, size=A).astype(np.int32)
    alt_count[rng.random(A) < 0.2] = 0                              # 0 = allocationMode All
    alt_admin = (rng.random(A) < 0.2).astype(np.uint8)
    K = draw(st.integers(0, 2))
    con_attr = rng.integers(-1, 2, size=(K, D)).astype(np.int32)
    con_claim = rng.integers(0, C, size=K).astype(np.int32)
    con_alt = (rng.random((K, A)) < 0.7).astype(np.uint8)
    used = (rng.random(D) < 0.2).astype(np.uint8)
    node_pool_bad = (rng.random(N) < 0.2).astype(np.uint8)
    base = (rng.random(N) < 0.9).astype(np.uint8)
    return dict(cand=np.ascontiguousarray(cand), used=used, alt_count=alt_count, alt_admin=alt_admin,
                req_alt_start=req_alt_start, req_claim=req_claim, con_attr=np.ascontiguousarray(con_attr),
                con_claim=con_claim, con_alt=np.ascontiguousarray(con_alt), dev_node=dev_node, dev_scope=dev_scope,
                scope_nodes=np.ascontiguousarray(scope_nodes), node_start=node_start, net_start=int(local.sum()),
                node_pool_bad=node_pool_bad, base=base, n_claims=C, max_per_claim=int(draw(st.integers(2, 32))))


def mask_args(p, counts, busy, out):
    return (p["cand"], p["used"], p["alt_count"], p["alt_admin"], p["req_alt_start"], p["dev_node"],
            p["dev_scope"], p["scope_nodes"], p["net_start"], p["node_pool_bad"], p["base"], counts, busy, out)


def search(mod, p, budget=100_000):
    D = max(len(p["used"]), 1)
    return mod.Search(p["cand"], p["used"], p["alt_count"], p["alt_admin"], p["req_alt_start"], p["req_claim"],
                      p["con_attr"], p["con_claim"], p["con_alt"], p["dev_node"], p["dev_scope"], p["scope_nodes"],
                      p["node_start"], p["net_start"], p["node_pool_bad"], p["n_claims"], p["max_per_claim"], budget,
                      np.empty(D, dtype=np.int32), np.zeros(D, dtype=np.uint64))


def reachable(p, node, d):
    return p["dev_node"][d] == node if d < p["net_start"] else bool(p["scope_nodes"][p["dev_scope"][d], node])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_node_mask_matches_reference(p):
    A, N = len(p["cand"]), len(p["base"])
    outs = []
    for mod in (fast, ref):
        counts, busy = np.zeros((A, N), np.int32), np.zeros((A, N), np.int32)
        out = np.zeros(N, np.uint8)
        total = mod.node_mask(*mask_args(p, counts, busy, out))
        outs.append((total, out.tolist(), counts.tolist(), busy.tolist()))
    assert outs[0] == outs[1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_search_matches_reference_and_holds_invariants(p):
    N = len(p["base"])
    M = p["n_claims"] * p["max_per_claim"]
    f, r = search(fast, p), search(ref, p)
    A, N = len(p["cand"]), len(p["base"])
    counts, busy, mask = np.zeros((A, N), np.int32), np.zeros((A, N), np.int32), np.zeros(N, np.uint8)
    fast.node_mask(*mask_args(p, counts, busy, mask))
    for node in range(N):
        rows_f, alt_f = np.empty(M, np.int32), np.empty(M, np.int32)
        rows_r, alt_r = np.empty(M, np.int32), np.empty(M, np.int32)
        nf, nr = f.pick(node, rows_f, alt_f), r.pick(node, rows_r, alt_r)
        assert nf == nr
        if nf < 0:
            continue
        assert rows_f[:nf].tolist() == rows_r[:nr].tolist() and alt_f[:nf].tolist() == alt_r[:nr].tolist()
        # necessary condition: a node the search accepts passes the counts (when base allows it)
        if p["base"][node]:
            assert mask[node] == 1
        chosen = list(zip(rows_f[:nf].tolist(), alt_f[:nf].tolist()))
        claim_of_alt = {a: int(p["req_claim"][q]) for q in range(len(p["req_claim"]))
                        for a in range(p["req_alt_start"][q], p["req_alt_start"][q + 1])}
        takers = {}
        for d, a in chosen:
            assert p["cand"][a, d] and reachable(p, node, d)
            c = claim_of_alt[a]
            if p["alt_admin"][a]:
                assert c not in takers.get(d, [])
            else:
                assert not p["used"][d] and d not in takers        # never allocated twice
            takers.setdefault(d, []).append(c)
        # exactly one alternative per request, with its device count
        for q in range(len(p["req_claim"])):
            alts = {a for _, a in chosen if p["req_alt_start"][q] <= a < p["req_alt_start"][q + 1]}
            assert len(alts) == 1
            a = alts.pop()
            got = sum(1 for _, x in chosen if x == a)
            if p["alt_count"][a] > 0:
                assert got == p["alt_count"][a]
            else:
                assert not p["node_pool_bad"][node]
                assert got == sum(1 for d in range(len(p["used"])) if p["cand"][a, d] and reachable(p, node, d))
        for k in range(len(p["con_claim"])):
            vals = {int(p["con_attr"][k, d]) for d, a in chosen
                    if p["con_alt"][k, a] and claim_of_alt[a] == p["con_claim"][k]}
            assert len(vals) <= 1 and -1 not in vals
        per_claim = {}
        for d, a in chosen:
            per_claim[claim_of_alt[a]] = per_claim.get(claim_of_alt[a], 0) + 1
        assert max(per_claim.values()) <= p["max_per_claim"]
    # feasible() agrees with pick() on every node
    nodes = np.arange(N, dtype=np.int32)
    ok = np.zeros(N, np.uint8)
    f.feasible(nodes, ok)
    for node in range(N):
        assert ok[node] == (f.pick(node, np.empty(M, np.int32), np.empty(M, np.int32)) >= 0)


def test_budget_exhaustion_fails_closed():
    # 1 request for 3 devices out of 12 whose constraint values are all distinct: no solution,
    # and the search must stop at the budget instead of enumerating
    D = 12
    p = dict(cand=np.ones((1, D), np.uint8), used=np.zeros(D, np.uint8), alt_count=np.array([3], np.int32),
             alt_admin=np.zeros(1, np.uint8), req_alt_start=np.array([0, 1], np.int32),
             req_claim=np.array([0], np.int32), con_attr=np.arange(D, dtype=np.int32).reshape(1, D),
             con_claim=np.zeros(1, np.int32), con_alt=np.ones((1, 1), np.uint8),
             dev_node=np.zeros(D, np.int32), dev_scope=np.full(D, -1, np.int32),
             scope_nodes=np.zeros((0, 1), np.uint8), node_start=np.array([0, D], np.int32), net_start=D,
             node_pool_bad=np.zeros(1, np.uint8), n_claims=1, max_per_claim=32)
    out = np.empty(32, np.int32)
    assert search(fast, p).pick(0, out, out.copy()) == -1
    assert search(fast, p, budget=5).pick(0, out, out.copy()) == -2
    assert search(ref, p, budget=5).pick(0, out, out.copy()) == -2
