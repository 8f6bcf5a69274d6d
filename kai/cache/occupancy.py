"""GPU occupancy of nodes and node pools, read from a :class:`~kai.cache.node_table.NodeTable`.

One definition, shared by ``kai status``, the ``kai simulate --report`` occupancy map and the
``kai_gpu_devices`` metric. Per node, in GPU devices (the four parts add up to ``gpus``):

- ``whole``: devices held by whole-GPU pods (the node's used GPU column, less the devices
  that host shared groups);
- ``fractional``: the portions of shared devices that fraction pods use;
- ``fragmented``: the unused rest of those shared devices: free, but only for fraction pods;
- ``free``: idle whole devices.

``largestFree`` of a pool is the most free whole devices on one of its nodes: the biggest
single-node GPU request the pool can take right now. Nodes without GPUs are left out. A node's
pool is its ``kai.scheduler/node-pool`` label (``default`` without one).
"""
from __future__ import annotations

import numpy as np

from kai.api import constants as C
from kai.api.resources import GPU

DEFAULT_POOL = "default"
_EPS = 1e-9


def _round(v: float) -> float | int:
    v = round(float(v), 4)
    return int(v) if v.is_integer() else v


def _columns(table):
    """GPU nodes' infos and per-node arrays (gpus, whole, fractional, fragmented, free), plus the
    shared-device matrix and its mask (None without device slots)."""
    infos = [i for i in table.infos if i is not None]
    idx = np.fromiter((i.idx for i in infos), dtype=np.intp, count=len(infos))
    gpus = table.allocatable[GPU, idx] if len(idx) else np.zeros(0)
    keep = gpus > _EPS
    idx = idx[keep]
    infos = [i for i, k in zip(infos, keep) if k]
    gpus = gpus[keep]
    idle = np.maximum(table.idle[GPU, idx], 0.0)
    du = on = None
    if table.dev_used.shape[1] and len(idx):
        du = table.dev_used[idx]
        on = du > _EPS
        n_shared = on.sum(axis=1).astype(np.float64)
        frac = np.where(on, np.minimum(du, 1.0), 0.0).sum(axis=1)
    else:
        n_shared = np.zeros(len(idx))
        frac = np.zeros(len(idx))
    whole = np.maximum(gpus - idle - n_shared, 0.0)
    return infos, (gpus, whole, frac, n_shared - frac, idle), du, on


def node_occupancy(table, pool_label: str = C.NODE_POOL_LABEL) -> list[dict]:
    """Per GPU node: ``{name, pool, gpus, whole, fractional, fragmented, free, shared}``, sorted by
    pool then name; ``shared`` lists the used portion of each shared device (0 < p <= 1)."""
    infos, (gpus, whole, frac, frag, free), du, on = _columns(table)
    out = []
    for k, info in enumerate(infos):
        shared = [] if on is None else [_round(min(p, 1.0)) for p in du[k][on[k]]]
        out.append({"name": info.name, "pool": info.labels.get(pool_label) or DEFAULT_POOL,
                    "gpus": _round(gpus[k]), "whole": _round(whole[k]), "fractional": _round(frac[k]),
                    "fragmented": _round(frag[k]), "free": _round(free[k]), "shared": shared})
    out.sort(key=lambda n: (n["pool"], n["name"]))
    return out


def pool_occupancy(table, pool_label: str = C.NODE_POOL_LABEL) -> list[dict]:
    """Per node pool: ``{name, nodes, gpus, whole, fractional, fragmented, free, largestFree}``,
    sorted by name. Vectorized (no per-node dicts): the controller calls it every cycle."""
    infos, cols, _, _ = _columns(table)
    if not infos:
        return []
    ids: dict[str, int] = {}
    inv = np.fromiter((ids.setdefault(i.labels.get(pool_label) or DEFAULT_POOL, len(ids)) for i in infos),
                      dtype=np.intp, count=len(infos))
    n = len(ids)
    sums = [np.bincount(inv, weights=c, minlength=n) for c in cols]
    count = np.bincount(inv, minlength=n)
    largest = np.zeros(n)
    np.maximum.at(largest, inv, cols[4])
    out = []
    for name, k in sorted(ids.items()):
        out.append({"name": name, "nodes": int(count[k]), "gpus": _round(sums[0][k]), "whole": _round(sums[1][k]),
                    "fractional": _round(sums[2][k]), "fragmented": _round(sums[3][k]), "free": _round(sums[4][k]),
                    "largestFree": _round(largest[k])})
    return out


def total_occupancy(pools: list[dict]) -> dict:
    """All pools together (the keys of one pool, ``name`` ``all``)."""
    tot = {"name": "all", "nodes": 0, "gpus": 0.0, "whole": 0.0, "fractional": 0.0, "fragmented": 0.0,
           "free": 0.0, "largestFree": 0.0}
    for p in pools:
        for k in ("nodes", "gpus", "whole", "fractional", "fragmented", "free"):
            tot[k] += p[k]
        tot["largestFree"] = max(tot["largestFree"], p["largestFree"])
    return {k: (_round(v) if isinstance(v, float) else v) for k, v in tot.items()}
