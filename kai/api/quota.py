"""What a task counts for in queue quota: [gpu devices, cpu millicores, memory bytes].

KAI counts a whole-GPU pod by its devices, a fraction / gpu-memory pod by its fraction x
devices (``PodInfo.gpu_quota``), a MIG instance ``nvidia.com/mig-<g>g.<mem>gb`` as ``g``
GPUs (``GetGpusQuota``), and each DRA device of a GPU device class as one GPU
(``PodInfo.dra_gpus``, see :mod:`kai.dra.quota`). The MIG columns come from the cluster's
ResourceRegistry (``ResourceRegistry.mig_columns()``); callers pass them in, so nothing here
is global.
Used by the proportion plugin, its reclaim rules, the queue order and the status writer.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from kai.api.resources import CPU, MEMORY

#: (column, gpu equivalent) pairs, as returned by ``ResourceRegistry.mig_columns()``
MigColumns = Sequence[tuple[int, int]]


def requests_mig(req: np.ndarray, mig_cols: MigColumns) -> bool:
    """The request asks for a MIG instance (KAI's IsMigCandidate)."""
    n = req.shape[0]
    return any(c < n and req[c] > 0 for c, _g in mig_cols)


def mig_gpus(req: np.ndarray, mig_cols: MigColumns) -> float:
    """GPUs the MIG instances of a request count for (g x quantity per MIG resource)."""
    g = 0.0
    n = req.shape[0]
    for col, w in mig_cols:
        if col < n and req[col]:
            g += w * float(req[col])
    return g


def quota_gpus(task, mig_cols: MigColumns = ()) -> float:
    g = task.gpu_quota + mig_gpus(task.req, mig_cols) if mig_cols else task.gpu_quota
    return g + task.dra_gpus


def quota_vector(task, mig_cols: MigColumns = ()) -> np.ndarray:
    """A task's float64[3] [gpu, cpu millicores, memory bytes] as counted in queue quota."""
    r = task.req
    return np.array([quota_gpus(task, mig_cols), r[CPU], r[MEMORY]])


def quota_tuple(task, mig_cols: MigColumns = ()) -> tuple[float, float, float]:
    """``quota_vector`` as a plain tuple (cheaper in per-task Python loops)."""
    r = task.req
    return (quota_gpus(task, mig_cols), float(r[CPU]), float(r[MEMORY]))
