"""NodePredicate: a filter plugin that decides per pod which nodes it may use.

The framework's contract for kube-scheduler style filters that are not static node facts
(those live in ``NodeTable.static_mask``): volume binding, the ConfigMap predicate, inter-pod
constraints. A plugin registers instances in ``ssn.node_predicates`` at session open;
``Session.node_mask`` ANDs the masks of those that ``apply`` to a task, ``Session.pre_predicate``
asks ``pre_filter`` first (a reason there is the job's pending reason, no node is scanned),
and ``kai.framework.explain`` asks ``explain`` only when a task fits nowhere.

A predicate whose answer can change when another pod is placed in the same session (a volume
taken, a port used, a pod counted) either sets ``per_task`` (tasks it applies to are then
placed one at a time, each with a fresh mask) or answers through ``domain_constraints``:
topology-domain filters and scores (kai._fast.domains) that the placement kernel re-evaluates
before each decision and charges after it, so runs of identical tasks stay one kernel call.
Such a predicate gives a ``run_key``: tasks with equal keys may share a run. Whatever a placement
takes is recorded through ``ssn.allocate_handlers`` / ``deallocate_handlers``, which the
Statement fires on allocate, evict and every undo, so a rolled-back gang gives it back. An
allocate handler may answer a placement with a reason (it could not take what the placement
needs: the Statement undoes it) or with :data:`PIPELINE_ONLY` (what it takes is still held by
evicted pods: the placement stands only as a pipeline); see ``Session.fire_allocate``.
"""
from __future__ import annotations

import numpy as np

#: an allocate handler's answer: the placement may stand only as a pipeline
PIPELINE_ONLY = "\x00pipeline-only"


class NodePredicate:
    """Base class; subclasses override what they need. ``name`` appears in reasons."""

    name = ""
    #: the mask depends on other placements in this session (see the module docstring)
    per_task = False
    #: ``applies`` keeps the look-alike contract (kai.framework.plugin.alike_stable) while the
    #: session's ``predicate_epoch`` is unchanged: a function of the pod's look-alike content,
    #: of session state placements do not change, and of the terms placed pods carry
    alike_stable = False
    #: ``applies`` (and every answer given when it is False) does not read the pod's labels
    #: while the predicate epoch is (0, 0) (kai.framework.plugin.label_blind)
    label_blind = False

    def applies(self, task) -> bool:
        """Cheap test: does this predicate constrain ``task`` at all?"""
        return False

    def pre_filter(self, task, job) -> str | None:
        """A reason no node can take ``task`` (e.g. a missing PersistentVolumeClaim), or None."""
        return None

    def mask(self, task, job) -> np.ndarray | None:
        """bool or uint8[N]: nodes where ``task`` passes; None = every node."""
        return None

    def domain_constraints(self, task, job) -> tuple[list[dict], bool] | None:
        """Kernel constraint specs for ``task`` (see kai._fast.domains.DomainConstraints; a spec
        may carry a ``reason`` for explanations) and whether the task may bootstrap its own
        affinity; None when this predicate adds none."""
        return None

    def run_key(self, task):
        """Tasks with equal keys get the same domain constraints (default: this predicate does
        not distinguish them)."""
        return None

    def explain(self, task, job, among: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """For a task that fits nowhere: (failing bool[N], reason) pairs, most specific first;
        each node in ``among`` is charged to the first reason it fails."""
        m = self.mask(task, job)
        if m is None:
            return []
        return [(~np.asarray(m, dtype=bool), f"node(s) rejected by {self.name}")]
