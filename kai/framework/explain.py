"""Why a task fits nowhere, in words a person can act on.

Computed lazily, once per failed job, never on the placement hot path. Each node is
charged to its first failing static predicate (not ready, cordoned, selector/affinity,
untolerated taint); nodes that pass those are charged once per resource they lack. With
``--detailed-fit-errors`` (``SchedulerConfig.detailed_fit_errors``) the message goes on with
every node's own reason, resource shortages with their figures (KAI's detailed fit errors),
up to MAX_DETAILED_NODES nodes.
"""
from __future__ import annotations

import numpy as np

from kai._fast import placement as _placement
from kai._fast.domains import KIND_AFFINITY, KIND_ANTI, KIND_SPREAD, DomainConstraints
from kai.api import constants as C
from kai.api.resources import format_resource
from kai.cache.node_table import tolerates


#: nodes listed by --detailed-fit-errors in one message (the rest are counted)
MAX_DETAILED_NODES = 200
_EPS = 1e-9          # as the placement kernel compares amounts


class NodeTally:
    """Counts of nodes per failure reason: each node is charged to the first reason it fails.

    With ``node_names`` (``--detailed-fit-errors``) it also remembers each node's reasons, for
    :meth:`per_node`."""

    def __init__(self, among: np.ndarray, node_names: list[str] | None = None) -> None:
        self.remaining = among.copy()
        self.parts: list[tuple[int, str]] = []
        self.names = node_names
        self.by_node: dict[int, str] = {}

    def _remember(self, nodes: np.ndarray, text: str) -> None:
        if self.names is not None:
            short = text.removeprefix("node(s) ")
            for i in np.flatnonzero(nodes):
                self.by_node.setdefault(int(i), short)

    def charge(self, failing: np.ndarray, text: str) -> None:
        newly = failing & self.remaining
        c = int(newly.sum())
        if c:
            self.parts.append((c, text))
            self._remember(newly, text)
        self.remaining &= ~failing

    def add(self, count: int, text: str, nodes: np.ndarray | None = None) -> None:
        """Count ``count`` nodes for ``text`` without taking them out of ``remaining``;
        ``nodes`` (bool[N]) names them for the per-node detail."""
        if count:
            self.parts.append((int(count), text))
            if nodes is not None:
                self._remember(nodes, text)

    def note(self, node: int, text: str) -> None:
        """A node's own reason text for the per-node detail (first one wins)."""
        if self.names is not None:
            self.by_node.setdefault(int(node), text)

    def detail(self) -> str:
        """``'4980 insufficient nvidia.com/gpu, 20 untolerated taint ...'``, largest first."""
        merged: dict[str, int] = {}
        for c, t in self.parts:
            merged[t] = merged.get(t, 0) + c
        return ", ".join(f"{c} {t}" for t, c in sorted(merged.items(), key=lambda p: -p[1]))

    def per_node(self, limit: int | None = None) -> str:
        """``'node-a: not ready; node-b: insufficient nvidia.com/gpu (...)'`` by node name, up to
        ``limit`` nodes (default MAX_DETAILED_NODES); empty without node names."""
        if self.names is None or not self.by_node:
            return ""
        limit = MAX_DETAILED_NODES if limit is None else limit
        rows = sorted((self.names[i], why) for i, why in self.by_node.items())
        out = "; ".join(f"{n}: {why}" for n, why in rows[:limit])
        if len(rows) > limit:
            out += f"; and {len(rows) - limit} more node(s)"
        return out


def new_tally(ssn, among: np.ndarray) -> NodeTally:
    """A NodeTally that keeps per-node reasons when ``--detailed-fit-errors`` is on."""
    if not ssn.config.detailed_fit_errors:
        return NodeTally(among)
    infos = ssn.state.nodes.infos
    return NodeTally(among, [i.name if i is not None else "" for i in infos])


def with_details(tally: NodeTally, message: str) -> str:
    detail = tally.per_node()
    return f"{message}. Per node: {detail}" if detail else message


def explain_task(ssn, task, job, mask: np.ndarray | None = None) -> str:
    table = ssn.state.nodes
    in_use = table.in_use.astype(bool)
    total = int(in_use.sum())
    if total == 0:
        return "0/0 nodes fit: the cluster has no nodes"
    tally = new_tally(ssn, in_use)
    tally.charge(table.not_ready.astype(bool), "node(s) not ready")
    if not tolerates(task.pod.spec.tolerations, C.UNSCHEDULABLE_TAINT, "", "NoSchedule"):
        tally.charge(table.cordoned.astype(bool), "node(s) unschedulable (cordoned)")
    tally.charge(~table.selector_mask(task.pod), "node(s) didn't match the pod's node selector/affinity")
    taint_ok, _ = table.taint_mask(task.pod)
    for taint, has in _untolerated_by_taint(table, task):
        tally.charge(has & ~taint_ok, f"untolerated taint {taint}")
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
    if tally.names is not None:
        _note_shortages(ssn, tally, req, cols)
    detail = tally.detail()
    if fits:
        extra = f"{fits} node(s) have room but were not usable for this pod"
        detail = f"{detail}; {extra}" if detail else extra
    return with_details(tally, f"0/{total} nodes fit: {detail}" if detail else f"0/{total} nodes fit")


def _note_shortages(ssn, tally: NodeTally, req: np.ndarray, cols: np.ndarray) -> None:
    """Per node left in the tally: each resource it lacks with the figures, or that it had room."""
    names = ssn.registry.names
    for n in np.flatnonzero(tally.remaining):
        lacks = []
        for c in cols:
            free = ssn.avail[c, n]
            if free < req[c] - _EPS:
                name = names[c]
                what = "too many pods" if name == "pods" else f"insufficient {name}"
                lacks.append(f"{what} (requested {format_resource(name, req[c])}, free "
                             f"{format_resource(name, max(free, 0.0))} of {format_resource(name, ssn.allocatable[c, n])})")
        tally.note(n, ", ".join(lacks) if lacks else "has room but was not usable for this pod (gang or placement)")


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


def _untolerated_by_taint(table, task) -> list[tuple[str, np.ndarray]]:
    """(key=value name, bool[N] nodes carrying it) per taint the pod does not tolerate."""
    out = []
    _, untolerated = table.taint_mask(task.pod)
    for t in untolerated:
        tid = table._taints[t]
        has = (table._taint_bits[:, tid // 64] & (np.uint64(1) << np.uint64(tid % 64))) != 0
        key, value, _effect = t
        out.append((f"{key}={value}" if value else key, has))
    return out
