"""The trace model shared by the trace loader (kai.sim.traces) and the synthetic stand-in
(kai.sim.synthetic.openb_like): nodes and pods of the Alibaba GPU-cluster trace as columns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TraceNodes:
    """One row per node: name, cpu (millicores), memory (MiB), gpu (devices), model ('' = none)."""
    name: list[str]
    cpu: np.ndarray
    mem: np.ndarray
    gpu: np.ndarray
    model: list[str]

    def __len__(self) -> int:
        return len(self.name)

    @property
    def total_gpu(self) -> float:
        return float(self.gpu.sum())

    def subset(self, idx) -> "TraceNodes":
        idx = list(idx)
        return TraceNodes([self.name[i] for i in idx], self.cpu[idx], self.mem[idx], self.gpu[idx],
                          [self.model[i] for i in idx])


@dataclass
class TracePods:
    """One row per pod, in arrival order. ``gpu`` is the GPU demand in devices (a fraction
    for ``num_gpu == 1`` pods asking less than 1000 milli); ``spec`` the allowed models
    (empty tuple = any)."""
    name: list[str]
    cpu: np.ndarray
    mem: np.ndarray
    num_gpu: np.ndarray
    gpu_milli: np.ndarray
    spec: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.name)

    @property
    def gpu(self) -> np.ndarray:
        """GPU demand per pod in devices."""
        return np.where(self.num_gpu == 1, self.gpu_milli / 1000.0, self.num_gpu.astype(np.float64))

    def take(self, idx, names: list[str] | None = None) -> "TracePods":
        idx = np.asarray(idx, dtype=np.int64)
        return TracePods(names if names is not None else [self.name[i] for i in idx], self.cpu[idx],
                         self.mem[idx], self.num_gpu[idx], self.gpu_milli[idx], [self.spec[i] for i in idx])
