"""NodeInfo: one node's identity and static properties; its resources live in the NodeTable.

``idx`` is the node's column in every ``(R, N)`` array of the table, so a NodeInfo is a
handle, not a copy: ``table.idle[:, info.idx]`` is its idle vector.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.k8s import Node


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
    try:
        v = int(float(raw))
    except ValueError:
        return 100, False
    if v > 10_000_000:
        v //= 1024 * 1024
    v = (v // 100) * 100
    return (v, True) if v > 0 else (100, False)


def is_mig_node(labels: dict[str, str]) -> bool:
    """MIG nodes host no GPU fractions: KAI's mig strategy ``single`` allows whole GPUs only,
    ``mixed`` MIG instances only."""
    return bool(labels.get(C.MIG_STRATEGY_LABEL)) or labels.get(C.MIG_ENABLED_LABEL, "").lower() == "true"


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
        try:
            self.gpu_count_label = int(self.labels.get(C.GPU_COUNT_LABEL, "0"))
        except ValueError:
            self.gpu_count_label = 0

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, idx={self.idx})"
