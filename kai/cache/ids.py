"""Value ids kept in int32 columns (node labels, pod labels, namespaces), renumbered to the
ones rows still use."""
from __future__ import annotations

import numpy as np


def renumber(col: np.ndarray, n: int, ids: dict[str, int]) -> tuple[np.ndarray, dict[str, int]] | None:
    """``col`` (int32, -1 = none) and ``ids`` (value -> id, ids ``0..len-1``) with the ids rows
    ``[:n]`` use renumbered ``0..`` in their old order, as new objects (rows past ``n`` must
    be -1), or None when every id is used. A row keeps its value: ``new_ids`` names for
    ``new_col[r]`` what ``ids`` named for ``col[r]``."""
    used = col[:n]
    live = np.unique(used[used >= 0])
    if len(live) == len(ids):
        return None
    remap = np.full(len(ids) + 1, -1, dtype=np.int32)       # (index -1 reads the last: -1)
    remap[live] = np.arange(len(live), dtype=np.int32)
    inverse = [""] * len(ids)
    for v, i in ids.items():
        inverse[i] = v
    return remap[col], {inverse[i]: j for j, i in enumerate(live.tolist())}
