"""KAI's ``--restrict-node-scheduling``: GPU pods only on GPU workers, other pods only on CPU workers.

With the flag on (``SchedulerConfig.restrict_node_scheduling``), a node's role is read from two
labels, KAI's ``--gpu-worker-node-label-key`` (default ``node-role.kubernetes.io/gpu-worker``)
and ``--cpu-worker-node-label-key`` (default ``node-role.kubernetes.io/cpu-worker``); only the
presence of a label counts, not its value. A pod that asks for any kind of GPU (whole devices,
a fraction, GPU memory, GPUs through DRA claims or a MIG instance) may only use nodes with the gpu worker label, every
other pod only nodes with the cpu worker label. A node may carry both.

The predicates plugin registers :class:`RestrictNodeScheduling`; the proportion plugin asks
:func:`capacity_masks` what the cluster's capacity is made of: as in KAI, nodes with neither
label are not part of the cluster, and the GPUs of a node without the gpu worker label are
not counted (only its cpu and memory are).
"""
from __future__ import annotations

import numpy as np

from kai.api.quota import requests_mig
from kai.framework.predicate import NodePredicate


def requires_gpu(task, mig_cols) -> bool:
    """KAI's IsRequireAnyKindOfGPU: whole GPUs, a fraction or GPU memory, GPUs through DRA
    claims, or a MIG instance."""
    if not task.is_cpu_only or task.dra_gpus > 0:
        return True
    return requests_mig(task.req, mig_cols)


def worker_masks(table, config) -> tuple[np.ndarray, np.ndarray]:
    """(gpu worker bool[N], cpu worker bool[N]) from the configured label keys."""
    return table.has_label(config.gpu_worker_node_label_key), table.has_label(config.cpu_worker_node_label_key)


def capacity_masks(table, config) -> tuple[np.ndarray, np.ndarray] | None:
    """None without the flag; else (nodes counted at all, nodes whose GPUs are counted)."""
    if not config.restrict_node_scheduling:
        return None
    gpu, cpu = worker_masks(table, config)
    return gpu | cpu, gpu


class RestrictNodeScheduling(NodePredicate):
    """The node filter; one mask per kind of pod, computed once per session."""

    name = "RestrictNodeScheduling"

    def __init__(self, ssn) -> None:
        cfg = ssn.config
        self.gpu_key, self.cpu_key = cfg.gpu_worker_node_label_key, cfg.cpu_worker_node_label_key
        gpu, cpu = worker_masks(ssn.state.nodes, cfg)
        self.gpu_ok, self.cpu_ok = gpu.astype(np.uint8), cpu.astype(np.uint8)
        self.mig_cols = ssn.registry.mig_columns()

    alike_stable = True         # applies to every pod
    label_blind = True

    def applies(self, task) -> bool:
        return True

    def mask(self, task, job) -> np.ndarray:
        return self.gpu_ok if requires_gpu(task, self.mig_cols) else self.cpu_ok

    def explain(self, task, job, among: np.ndarray) -> list[tuple[np.ndarray, str]]:
        if requires_gpu(task, self.mig_cols):
            return [(~self.gpu_ok.astype(bool), f"node(s) without the GPU worker label {self.gpu_key} "
                                                 f"(--restrict-node-scheduling; the pod requests GPUs)")]
        return [(~self.cpu_ok.astype(bool), f"node(s) without the CPU worker label {self.cpu_key} "
                                             f"(--restrict-node-scheduling; the pod requests no GPU)")]


__all__ = ["RestrictNodeScheduling", "capacity_masks", "requires_gpu", "worker_masks"]
