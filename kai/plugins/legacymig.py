"""Legacy MIG pods: KAI's rules for pods that ask for MIG instances in annotations.

Before MIG instances were extended resources in containers' requests, a pod asked for one
with an annotation named like the resource (``nvidia.com/mig-1g.10gb: "1"``;
:func:`kai.api.pod_info.legacy_mig_annotations`). KAI (node_info.PredicateByNodeResourcesType)
keeps such pods running where they are, charges their node the annotated instances, and

- never schedules one: a pending legacy MIG pod waits with the reason
  (:func:`legacy_mig_reason`, asked by the predicates plugin's pre-predicate);
- schedules no MIG pod (one that asks for a MIG instance in its requests) on a node where a
  legacy MIG pod is charged: :class:`LegacyMigNodes`, registered by the predicates plugin for
  a session only when some node has one (``PodTable.legacy_mig``), so the common cluster
  pays nothing for it.

A legacy pod stays charged to its node until it is deleted (evicted in a session, it still
counts, as KAI's node keeps it in LegacyMIGTasks).
"""
from __future__ import annotations

import numpy as np

from kai.api.quota import requests_mig
from kai.framework.predicate import NodePredicate

NODES_REASON = "node(s) with legacy MIG pods (MIG instances asked for in pod annotations) take no new MIG pods"


def legacy_mig_reason(task) -> str | None:
    """Why a legacy MIG pod cannot be scheduled; None for any other pod."""
    legacy = task.legacy_mig
    if not legacy:
        return None
    asked = ", ".join(f"{name}: {n}" for name, n in legacy)
    return (f"pod {task.key} is a legacy MIG pod (annotation {asked}): legacy MIG pods cannot be "
            f"scheduled; ask for MIG instances in the containers' resource requests instead")


class LegacyMigNodes(NodePredicate):
    """MIG pods only on nodes where no legacy MIG pod is charged (one mask per session)."""

    name = "LegacyMIG"
    alike_stable = True         # applies: the pod's request; the nodes do not move in a session
    label_blind = True

    def __init__(self, ssn, legacy_nodes) -> None:
        self.mig_cols = ssn.registry.mig_columns()
        ok = np.ones(ssn.allocatable.shape[1], dtype=np.uint8)
        ok[np.fromiter(legacy_nodes, dtype=np.intp, count=len(legacy_nodes))] = 0
        self.ok = ok

    def applies(self, task) -> bool:
        return requests_mig(task.req, self.mig_cols)

    def mask(self, task, job) -> np.ndarray:
        return self.ok

    def explain(self, task, job, among: np.ndarray) -> list[tuple[np.ndarray, str]]:
        return [(~self.ok.astype(bool), NODES_REASON)]


def register(ssn) -> None:
    """Add :class:`LegacyMigNodes` to the session when a node has a legacy MIG pod."""
    nodes = [n for n in ssn.state.pod_table.legacy_mig if 0 <= n < ssn.allocatable.shape[1]]
    if nodes:
        ssn.node_predicates.append(LegacyMigNodes(ssn, nodes))


__all__ = ["LegacyMigNodes", "NODES_REASON", "legacy_mig_reason", "register"]
