"""Why a task fits nowhere, in words a person can act on.

Computed lazily, once per failed job, never on the placement hot path. Each node is
charged to its first failing static predicate (not ready, cordoned, selector/affinity,
untolerated taint); nodes that pass those are charged once per resource they lack.
"""
from __future__ import annotations

import numpy as np

from kai._fast import placement as _placement
from kai._fast.domains import KIND_AFFINITY, KIND_ANTI, KIND_SPREAD, DomainConstraints
from kai.api import constants as C
from kai.cache.node_table import tolerates


class NodeTally:
    """Counts of nodes per failure reason: each node is charged to the first reason it fails."""

    def __init__(self, among: np.ndarray) -> None:
        self.remaining = among.copy()
        self.parts: list[tuple[int, str]] = []

    def charge(self, failing: np.ndarray, text: str) -> None:
        c = int((failing & self.remaining).sum())
        if c:
            self.parts.append((c, text))
        self.remaining &= ~failing

    def add(self, count: int, text: str) -> None:
        if count:
            self.parts.append((int(count), text))

    def detail(self) -> str:
        """``'4980 insufficient nvidia.com/gpu, 20 untolerated taint ...'``, largest first."""
        return ", ".join(f"{c} {t}" for c, t in sorted(self.parts, key=lambda p: -p[0]))


def explain_task(ssn, task, job, mask: np.ndarray | None = None) -> str:
    table = ssn.state.nodes
    in_use = table.in_use.astype(bool)
    total = int(in_use.sum())
    if total == 0:
        return "0/0 nodes fit: the cluster has no nodes"
    tally = NodeTally(in_use)
    tally.charge(table.not_ready.astype(bool), "node(s) not ready")
    if not tolerates(task.pod.spec.tolerations, C.UNSCHEDULABLE_TAINT, "", "NoSchedule"):
        tally.charge(table.cordoned.astype(bool), "node(s) unschedulable (cordoned)")
    tally.charge(~table.selector_mask(task.pod), "node(s) didn't match the pod's node selector/affinity")
    taint_ok, _ = table.taint_mask(task.pod)
    for taint, count in _untolerated_by_taint(table, task, tally.remaining & ~taint_ok):
        tally.add(count, f"untolerated taint {taint}")
    tally.remaining &= taint_ok
    for pred in ssn.predicates_for(task):
        for failing, text in pred.explain(task, job, tally.remaining.copy()):
            tally.charge(np.asarray(failing, dtype=bool), text)
    for failing, text in domain_failures(ssn, task, job):
        tally.charge(failing, text)
    plugin_mask = ssn.node_mask(task, job) if mask is None else mask
    tally.charge(~plugin_mask.astype(bool), "node(s) excluded by scheduling constraints (topology/plugins)")
    width = ssn.allocatable.shape[0]
    req = task.req_vec(width)[:width]
    cols = np.flatnonzero(req > 0).astype(np.int32)
    short = np.zeros(len(cols), dtype=np.int64)
    fits = _placement.fit_counts(ssn.arrays, np.ascontiguousarray(tally.remaining, dtype=np.uint8),
                                 np.ascontiguousarray(req), cols, short)
    names = ssn.registry.names
    for k, c in enumerate(cols):
        tally.add(short[k], "too many pods" if names[c] == "pods" else f"insufficient {names[c]}")
    detail = tally.detail()
    if fits:
        extra = f"{fits} node(s) have room but were not usable for this pod"
        detail = f"{detail}; {extra}" if detail else extra
    return f"0/{total} nodes fit: {detail}" if detail else f"0/{total} nodes fit"


def domain_failures(ssn, task, job) -> list[tuple[np.ndarray, str]]:
    """(failing bool[N], reason) per topology-domain filter of ``task`` (kai._fast.domains),
    each evaluated alone (the affinity terms together: their bootstrap rule is joint)."""
    specs, boot = ssn.domain_specs(task, job)
    n = ssn.allocatable.shape[1]
    filters = [s for s in specs if s["kind"] in (KIND_ANTI, KIND_SPREAD)]
    groups = [[s] for s in filters]
    aff = [s for s in specs if s["kind"] == KIND_AFFINITY]
    if aff:
        groups.insert(0, aff)
    out = []
    ones = np.ones(n, dtype=np.uint8)
    for group in groups:
        ok = DomainConstraints(n, group, boot).filter_and_score(ones, np.zeros(n))
        out.append((~np.asarray(ok, dtype=bool), group[0].get("reason", "node(s) failed a pod constraint")))
    return out


def _untolerated_by_taint(table, task, among: np.ndarray) -> list[tuple[str, int]]:
    """Charge each node to its first untolerated taint; name taints as key=value."""
    out: dict[str, int] = {}
    _, untolerated = table.taint_mask(task.pod)
    left = among.copy()
    for t in untolerated:
        tid = table._taints[t]
        has = (table._taint_bits[:, tid // 64] & (np.uint64(1) << np.uint64(tid % 64))) != 0
        c = int((has & left).sum())
        if c:
            key, value, _effect = t
            name = f"{key}={value}" if value else key
            out[name] = out.get(name, 0) + c
            left &= ~has
    return list(out.items())
