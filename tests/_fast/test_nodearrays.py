"""kai._fast.nodearrays against its readable reference, on random arrays (hypothesis)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kai._fast import nodearrays as fast
from kai._fast.reference import nodearrays as ref


def _arrays(rng, r, n):
    idle = rng.integers(0, 9, size=(r, n)).astype(np.float64)
    releasing = rng.integers(0, 3, size=(r, n)).astype(np.float64)
    return idle, releasing, idle + releasing


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), r=st.integers(1, 5), n=st.integers(1, 12), p=st.integers(0, 40),
       k=st.integers(1, 4), sign=st.sampled_from([1.0, -1.0]))
def test_charge_rows_is_the_reference(seed, r, n, p, k, sign):
    rng = np.random.default_rng(seed)
    idle, releasing, avail = _arrays(rng, r, n)
    width = int(rng.integers(1, r + 1))                     # requests may be narrower than R
    table = rng.choice([0.0, 0.5, 1.0, 2.0], size=(k, width))
    idx = rng.integers(-1, n, size=p).astype(np.int32)       # -1: skipped
    rid = rng.integers(0, k, size=p).astype(np.int32)
    rel = rng.integers(0, 2, size=p).astype(np.uint8)
    want = [a.tolist() for a in (idle, releasing, avail)]
    ref.charge_rows(*want, idx.tolist(), table.tolist(), rid.tolist(), rel.tolist(), sign)
    fast.charge_rows(idle, releasing, avail, idx, table, rid, rel, sign)
    for got, exp in zip((idle, releasing, avail), want):
        assert np.allclose(got, np.array(exp))
    # the same as charging the pods one by one, in order
    one = _arrays(np.random.default_rng(seed), r, n)
    for q in range(p):
        if idx[q] >= 0:
            fast.charge(*one, int(idx[q]), table[rid[q]], sign, bool(rel[q]))
    for got, exp in zip((idle, releasing, avail), one):
        assert np.array_equal(got, exp)


def test_charge_rows_refuses_rows_and_columns_out_of_range():
    idle, releasing, avail = (np.zeros((2, 3)) for _ in range(3))
    table = np.ones((2, 2))
    ok = dict(idx=np.array([0, 2], dtype=np.int32), rid=np.array([0, 1], dtype=np.int32),
              rel=np.zeros(2, dtype=np.uint8))
    for change, match in ((dict(idx=np.array([0, 3], dtype=np.int32)), "node column"),
                          (dict(rid=np.array([0, 2], dtype=np.int32)), "request row"),
                          (dict(rid=np.array([-1, 0], dtype=np.int32)), "request row"),
                          (dict(rel=np.zeros(1, dtype=np.uint8)), "one entry per pod")):
        args = {**ok, **change}
        with pytest.raises(ValueError, match=match):
            fast.charge_rows(idle, releasing, avail, args["idx"], table, args["rid"], args["rel"], 1.0)
    with pytest.raises(ValueError, match="columns"):
        fast.charge_rows(idle, releasing, avail, ok["idx"], np.ones((2, 3)), ok["rid"], ok["rel"], 1.0)
    assert not idle.any()                                    # nothing charged by a refused call
    fast.charge_rows(idle, releasing, avail, ok["idx"], table, ok["rid"], ok["rel"], 1.0)
    assert idle.tolist() == [[-1.0, 0.0, -1.0], [-1.0, 0.0, -1.0]]
