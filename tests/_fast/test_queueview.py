"""kai._fast.queueview: the proportion plugin's per-queue views and charges, compiled, against
the pure-Python reference (kai._fast.reference.queueview) and QueueOrder.stats_reference (the
queue-order rules as they read), on random rows including the boundary values (-1 unlimited,
0 shares, equal within 1e-9)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kai._fast import queueview as fast
from kai._fast.reference import queueview as ref
from kai.plugins.queue_order import QueueOrder

U = -1.0
IMPLS = [pytest.param(fast, id="cython"), pytest.param(ref, id="reference")]

_value = st.one_of(st.sampled_from([U, 0.0, 1.0, 2.0, 1e-10, 8.0, 1000.0, 1e9]),
                   st.floats(min_value=0.0, max_value=1e10, allow_nan=False))
_row = st.tuples(_value, _value, _value)


def _rows(draw_rows):
    return np.array(draw_rows, dtype=np.float64).reshape(len(draw_rows), 3)


@st.composite
def _case(draw):
    n = draw(st.integers(1, 5))
    alloc = _rows([draw(st.tuples(*[st.floats(0.0, 1e10, allow_nan=False)] * 3)) for _ in range(n)])
    fair, deserved, share = (_rows([draw(_row) for _ in range(n)]) for _ in range(3))
    total = np.array([draw(st.floats(0.0, 1e10)) for _ in range(3)])
    req = draw(st.tuples(*[st.floats(0.0, 1e10, allow_nan=False)] * 3))
    return alloc, fair, deserved, share, total, req


def _make(impl, alloc, fair, deserved, share, total):
    denom = np.where(share == U, total, share)
    return impl.QueueRows(alloc, np.zeros_like(alloc), fair, deserved, share, np.ascontiguousarray(denom))


@settings(max_examples=300, deadline=None)
@given(_case())
def test_stats_same_as_reference_and_the_rules(case):
    alloc, fair, deserved, share, total, req = case
    a, b = _make(fast, alloc.copy(), fair, deserved, share, total), _make(ref, alloc.copy(), fair, deserved, share, total)
    job = SimpleNamespace(key="j", tasks_to_allocate=lambda *_a, **_k: [SimpleNamespace(vec=req)])
    state = SimpleNamespace(index={}, alloc=alloc.copy(), fair=fair, deserved=deserved, alloc_share=share,
                            total=total, quota_vector=lambda t: t.vec)
    rules = QueueOrder(state, task_order_key=None)
    for i in range(alloc.shape[0]):
        got = a.stats(i, *req)
        assert got == b.stats(i, *req)
        assert got == rules.stats_reference(i, job)
        assert all(type(x) is bool for x in got[:3])


@settings(max_examples=200, deadline=None)
@given(_case(), st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.booleans()), max_size=12))
def test_charge_same_as_reference(case, events):
    alloc, fair, deserved, share, total, req = case
    a, b = _make(fast, alloc.copy(), fair, deserved, share, total), _make(ref, alloc.copy(), fair, deserved, share, total)
    n = alloc.shape[0]
    for row, plus, nonpre in events:
        rows = sorted({row % n, 0})
        for impl in (a, b):
            impl.charge(rows, *req, 1.0 if plus else -1.0, nonpre)
    assert np.array_equal(a.alloc, b.alloc) and np.array_equal(a.alloc_np, b.alloc_np)


@pytest.mark.parametrize("impl", IMPLS)
def test_charge_is_undone_exactly_and_live(impl):
    alloc = np.array([[1.0, 100.0, 3e9], [0.5, 7.0, 1e6]])
    view = alloc[1]                                   # a live view, as QueueShares holds
    rows = impl.QueueRows(alloc, np.zeros((2, 3)), np.ones((2, 3)), np.full((2, 3), U), np.ones((2, 3)),
                          np.ones((2, 3)))
    before = alloc.copy()
    rows.charge([1, 0], 0.1, 0.2, 0.3, 1.0, True)
    assert view.tolist() == [0.6, 7.2, 1e6 + 0.3] and rows.alloc_np[0].tolist() == [0.1, 0.2, 0.3]
    rows.charge([1, 0], 0.1, 0.2, 0.3, -1.0, True)
    # x + v - v may differ from x in the last bit; the Python loop it replaces did the same
    assert np.allclose(alloc, before, rtol=0, atol=1e-9)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_input_is_refused(impl):
    good = np.zeros((2, 3))
    with pytest.raises(ValueError):
        impl.QueueRows(good, good, good, good, good, np.zeros((3, 3)))
    with pytest.raises(ValueError):
        impl.QueueRows(good, good, good, good, good, np.zeros((2, 2)))
    rows = impl.QueueRows(good, good.copy(), good, good, good, good)
    with pytest.raises(IndexError):
        rows.stats(2, 0.0, 0.0, 0.0)
    with pytest.raises(IndexError):
        rows.charge([0, 5], 1.0, 1.0, 1.0, 1.0, False)
    assert good.tolist() == [[0.0] * 3] * 2           # nothing charged before the refusal


@settings(max_examples=300, deadline=None)
@given(_case(), st.tuples(*[st.floats(0.0, 1e10, allow_nan=False)] * 3), st.integers(0, 2), st.integers(0, 2))
def test_compare_same_as_reference_and_the_python_rules(case, other_req, lprio, rprio):
    """Rules 1-7 compiled = reference = QueueOrder.compare's Python path (rows off)."""
    alloc, fair, deserved, share, total, req = case
    n = alloc.shape[0]
    a, b = _make(fast, alloc.copy(), fair, deserved, share, total), _make(ref, alloc.copy(), fair, deserved, share, total)
    jobs = [SimpleNamespace(key=f"j{k}", tasks_to_allocate=lambda *_a, _r=r, **_k: [SimpleNamespace(vec=_r)])
            for k, r in enumerate((req, other_req))]
    state = SimpleNamespace(index={f"q{i}": i for i in range(n)}, alloc=alloc.copy(), fair=fair, deserved=deserved,
                            alloc_share=share, total=total, quota_vector=lambda t: t.vec)
    fast_order = QueueOrder(state, task_order_key=None)
    py_order = QueueOrder(state, task_order_key=None)
    py_order.rows = None
    infos = [SimpleNamespace(name=f"q{i}", priority=(lprio, rprio)[i % 2], creation=i // 2) for i in range(n)]
    for li in range(n):
        for ri in range(n):
            got = a.compare(li, ri, *req, *other_req, infos[li].priority, infos[ri].priority)
            assert got == b.compare(li, ri, *req, *other_req, infos[li].priority, infos[ri].priority)
            whole = fast_order.compare(infos[li], infos[ri], jobs[0], jobs[1])
            assert whole == py_order.compare(infos[li], infos[ri], jobs[0], jobs[1])
            if got:
                assert whole == got


_bound = st.one_of(st.sampled_from([U, 0.0, 1.0, 2.0, 8.0, 1e9]), st.floats(min_value=0.0, max_value=1e10))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.lists(st.tuples(*[st.floats(0.0, 1e10, allow_nan=False)] * 3), min_size=n, max_size=n),
    st.lists(st.tuples(*[st.floats(0.0, 1e10, allow_nan=False)] * 3), min_size=n, max_size=n),
    st.lists(st.tuples(_bound, _bound, _bound), min_size=n, max_size=n),
    st.lists(st.tuples(_bound, _bound, _bound), min_size=n, max_size=n),
    st.lists(st.integers(0, n - 1), min_size=1, max_size=4, unique=True))),
    st.tuples(*[st.sampled_from([0.0, 1.0, 0.5, 2.0, 1e9]) | st.floats(0.0, 1e10)] * 3), st.booleans())
def test_first_over_same_as_reference_and_the_python_check(case, req, nonpre):
    """first_over compiled = reference = the proportion plugin's Python check as it reads
    (limit then, for a non-preemptible job, quota; row by row, leaf first)."""
    alloc, alloc_np, limit, deserved, path = (_rows(x) if k < 4 else x for k, x in enumerate(case))
    z = np.zeros_like(alloc)
    got = {impl.__name__: impl.QueueRows(alloc, alloc_np, z, deserved, z, z, limit).first_over(path, *req, nonpre)
           for impl in (fast, ref)}
    assert got[fast.__name__] == got[ref.__name__]
    want = -1
    for k, r in enumerate(path):
        hits = [c for c in range(3) if req[c] > 0 and limit[r, c] != U and alloc[r, c] + req[c] > limit[r, c] + 1e-9]
        if hits:
            want = 6 * k + hits[0]
            break
        hits = [c for c in range(3) if nonpre and req[c] > 0 and deserved[r, c] != U
                and alloc_np[r, c] + req[c] > deserved[r, c] + 1e-9]
        if hits:
            want = 6 * k + 3 + hits[0]
            break
    assert got[fast.__name__] == want


@pytest.mark.parametrize("impl", IMPLS)
def test_first_over_without_limits_and_bad_rows(impl):
    alloc = np.array([[3.0, 0.0, 0.0], [7.0, 0.0, 0.0]])
    z = np.zeros((2, 3))
    quota = np.array([[4.0, U, U], [U, U, U]])
    rows = impl.QueueRows(alloc, alloc.copy(), z, quota, z, z)      # no limit given: none bind
    assert rows.limit.tolist() == [[U] * 3] * 2
    assert rows.first_over([0, 1], 100.0, 0.0, 0.0, False) == -1
    assert rows.first_over([0, 1], 1.0, 0.0, 0.0, True) == -1      # 3 + 1 = 4: within quota
    assert rows.first_over([0, 1], 1.5, 0.0, 0.0, True) == 3        # leaf, quota, gpu
    with pytest.raises(IndexError):
        rows.first_over([0, 2], 1.0, 0.0, 0.0, False)
    with pytest.raises(ValueError):
        impl.QueueRows(alloc, alloc, z, z, z, z, np.zeros((3, 3)))
