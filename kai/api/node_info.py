"""NodeInfo: one node's identity and static properties; its resources live in the NodeTable.

``idx`` is the node's column in every ``(R, N)`` array of the table, so a NodeInfo is a
handle, not a copy: ``table.idle[:, info.idx]`` is its idle vector.
"""
from __future__ import annotations

import math

from kai.api import constants as C
from kai.api.k8s import Node
from kai.api.resources import GPU_RESOURCE, MAX_GPUS_PER_NODE, MAX_QUANTITY, QuantityError, parse_quantity

# GPU memory per device, in MiB (or in bytes, see gpu_memory_mib): anything larger is not a size
_MAX_GPU_MEMORY = 2**53


def node_ready(node: Node) -> bool:
    for cond in node.status.conditions:
        if cond.type == "Ready":
            return cond.status == "True"
    # A node without conditions (e.g. written by hand for `kai simulate`) counts as ready.
    return not node.status.conditions


def gpu_memory_mib(node: Node) -> tuple[int, bool]:
    """Per-device GPU memory from ``nvidia.com/gpu.memory`` floored to 100 MiB; (100, False) if absent.

    Values that look like bytes (> 10^7) are converted to MiB, as KAI does.
    """
    raw = node.metadata.labels.get(C.GPU_MEMORY_LABEL)
    if raw is None:
        return 100, False
    v = _label_number(raw, _MAX_GPU_MEMORY)
    if v is None:
        return 100, False
    if v > 10_000_000:
        v //= 1024 * 1024
    v = (v // 100) * 100
    return (v, True) if v > 0 else (100, False)


def is_mig_node(labels: dict[str, str], mig_label_key: str = C.MIG_ENABLED_LABEL) -> bool:
    """MIG nodes host no GPU fractions: KAI's mig strategy ``single`` allows whole GPUs only,
    ``mixed`` MIG instances only. ``mig_label_key`` is KAI's ``--mig-worker-node-label-key``;
    its value is read as Go's ParseBool does (1, t, true, TRUE, True)."""
    return bool(labels.get(C.MIG_STRATEGY_LABEL)) or labels.get(mig_label_key, "") in _GO_TRUE


_GO_TRUE = ("1", "t", "T", "true", "TRUE", "True")


def _label_number(raw: str, limit: float) -> int | None:
    """A label value as a whole number in [0, limit], else None (not a number, NaN, inf, huge)."""
    try:
        f = float(raw)
    except ValueError:
        return None
    if not math.isfinite(f) or f < 0 or f > limit:
        return None
    return int(f)


def validate_node(node: Node) -> list[str]:
    """Problems that make a Node unusable for kai, each naming its field (empty: fine).

    Checked where objects enter kai (the informers, ``kai simulate``'s loader): allocatable
    and capacity quantities must parse, be >= 0 and fit in int64; ``nvidia.com/gpu`` at most
    MAX_GPUS_PER_NODE; the GPU feature discovery labels kai reads (``nvidia.com/gpu.memory``,
    ``nvidia.com/gpu.count``), when present, must be whole numbers in range.
    """
    errs: list[str] = []
    if not node.metadata.name:
        errs.append("metadata.name is empty")
    for where, res in (("status.allocatable", node.status.allocatable), ("status.capacity", node.status.capacity)):
        for name, q in res.items():
            try:
                v = parse_quantity(q)
            except QuantityError as exc:
                errs.append(f"{where}.{name}: {exc}")
                continue
            if v < 0:
                errs.append(f"{where}.{name}: negative quantity {q!r}")
            elif v * 1000 > MAX_QUANTITY:
                errs.append(f"{where}.{name}: quantity {q!r} is too large")
            elif name == GPU_RESOURCE and v > MAX_GPUS_PER_NODE:
                errs.append(f"{where}.{name}: {q!r} GPUs is more than {MAX_GPUS_PER_NODE} per node")
    labels = node.metadata.labels
    for label, limit in ((C.GPU_MEMORY_LABEL, _MAX_GPU_MEMORY), (C.GPU_COUNT_LABEL, MAX_GPUS_PER_NODE)):
        raw = labels.get(label)
        if raw is not None and raw != "" and _label_number(raw, limit) is None:
            errs.append(f"metadata.labels[{label}]: {raw[:64]!r} is not a whole number between 0 and {limit}")
    return errs


class NodeInfo:
    """Static facts about a node (labels, taints, readiness, GPU memory) plus its array column."""

    __slots__ = ("name", "idx", "node", "labels", "taints", "unschedulable", "ready",
                 "gpu_memory_mib", "gpu_memory_synced", "gpu_count_label")

    def __init__(self, node: Node, idx: int) -> None:
        self.node = node
        self.name = node.metadata.name
        self.idx = idx
        self.labels = node.metadata.labels
        self.taints = node.spec.taints
        self.unschedulable = node.spec.unschedulable
        self.ready = node_ready(node)
        self.gpu_memory_mib, self.gpu_memory_synced = gpu_memory_mib(node)
        self.gpu_count_label = _label_number(self.labels.get(C.GPU_COUNT_LABEL, "0"), MAX_GPUS_PER_NODE) or 0

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, idx={self.idx})"
