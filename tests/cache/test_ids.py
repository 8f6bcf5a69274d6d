"""kai.cache.ids.renumber: rows keep their values, unused ids go, the used keep their order."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kai.cache.ids import renumber


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.lists(st.integers(-1, 11), max_size=40), st.integers(0, 5))
def test_rows_keep_their_values_and_only_used_ids_stay(n_ids, rows, tail):
    ids = {f"v{i}": i for i in range(n_ids)}
    col = np.array([r if r < n_ids else -1 for r in rows] + [-1] * tail, dtype=np.int32)
    n = len(rows)
    before = col.copy()
    got = renumber(col, n, ids)
    used = sorted({int(r) for r in col[:n] if r >= 0})
    assert np.array_equal(col, before)                         # the old column is left as it was
    if len(used) == n_ids:
        assert got is None
        return
    new_col, new_ids = got
    assert new_col is not col and new_col.dtype == np.int32 and new_col.shape == col.shape
    inverse = {i: v for v, i in new_ids.items()}
    assert sorted(new_ids.values()) == list(range(len(used)))
    assert [inverse.get(int(r)) for r in new_col] == [f"v{r}" if r >= 0 else None for r in col]
    assert list(new_ids) == [f"v{i}" for i in used]           # old order kept
