"""QueueInfo and the queue tree, read from ``scheduling.run.ai/v2`` Queues.

Units inside kai: gpu in devices, cpu in millicores, memory in bytes. KAI's Queue spec
gives memory in MB (10^6 bytes); it is converted here once, as KAI's proportion plugin does
it: ``max(-1, MB x 10^6)``, so any negative memory value is ``-1``. ``-1`` keeps its meaning
(unlimited quota / no limit); an omitted resource block (or no ``spec.resources`` at all)
means quota 0, weight 0 and limit 0, which admits nothing for that resource -- exactly KAI's
behaviour.

Value semantics: every number KAI's Queue CRD accepts is used as KAI's scheduler uses it.
A negative quota other than -1 is subtracted in the deserved pass (KAI adds
``min(quota, request)`` to the fair share), a negative limit other than -1 blocks the
resource, a negative overQuotaWeight enters the weight normalisation as it is (alone among
its siblings it behaves like a positive weight; mixed with positive weights it shrinks or
cancels theirs). None of these is refused: ``queue_warnings`` lists them, and the status
writer puts them on the Queue as a ``SpecWarning`` condition and an Event. Only a Queue that
cannot be identified (no name), whose min-runtime is not a duration or whose numbers are not
finite amounts is left out (``validate_queue``).
"""
from __future__ import annotations

import math

import msgspec

from kai.api.k8s import ObjectMeta, Queue, QueueResource, QueueResources, QueueSpec
from kai.api.pod_info import parse_time

QUEUE_RESOURCES = ("gpu", "cpu", "memory")
_MEMORY_UNIT = 1e6
# quotas and limits beyond this (gpu devices, cpu millicores, memory MB) are not amounts any
# cluster has; the fair-share arithmetic keeps them finite below it
MAX_QUEUE_AMOUNT = 1e15
MAX_OVER_QUOTA_WEIGHT = 1e9
DEFAULT_QUEUE_PRIORITY = 100


def parse_duration(value: str | None) -> float | None:
    """Go duration string (``90s``, ``1h30m``, ``500ms``) -> seconds; None when absent or bad."""
    if not value:
        return None
    import re
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(a + b for a, b in parts) != value.lstrip("+"):
        return None
    return sum(float(n) * units[u] for n, u in parts)


class QueueInfo:
    """One queue: its place in the tree and its quota, over-quota weight and limit per resource."""

    __slots__ = ("name", "uid", "parent", "children", "priority", "deserved", "limit", "weight",
                 "creation", "preempt_min_runtime", "reclaim_min_runtime", "display_name", "queue")

    def __init__(self, q: Queue) -> None:
        self.queue = q
        self.name = q.metadata.name
        self.uid = q.metadata.uid or self.name
        self.display_name = q.spec.display_name or self.name
        self.parent = q.spec.parent_queue or ""
        self.children: list[str] = []
        self.priority = q.spec.priority if q.spec.priority is not None else DEFAULT_QUEUE_PRIORITY
        self.creation = parse_time(q.metadata.creation_timestamp)
        res = q.spec.resources
        self.deserved = [0.0, 0.0, 0.0]
        self.limit = [0.0, 0.0, 0.0]
        self.weight = [0.0, 0.0, 0.0]
        for i, name in enumerate(QUEUE_RESOURCES):
            r: QueueResource | None = getattr(res, name) if res is not None else None
            if r is None:
                continue
            if name == "memory":
                self.deserved[i] = max(-1.0, r.quota * _MEMORY_UNIT)
                self.limit[i] = max(-1.0, r.limit * _MEMORY_UNIT)
            else:
                self.deserved[i] = float(r.quota)
                self.limit[i] = float(r.limit)
            self.weight[i] = float(r.over_quota_weight)
        self.preempt_min_runtime = parse_duration(q.spec.preempt_min_runtime)
        self.reclaim_min_runtime = parse_duration(q.spec.reclaim_min_runtime)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def __repr__(self) -> str:
        return f"QueueInfo({self.name}, parent={self.parent!r}, prio={self.priority})"


def validate_queue(q: Queue) -> list[str]:
    """Why a Queue cannot be scheduled at all (empty when it can be).

    Only what kai cannot give a meaning to: a Queue without a name, a min-runtime that is
    not a duration, a quota/limit/weight that is not finite or beyond any real amount
    (``MAX_QUEUE_AMOUNT``, ``MAX_OVER_QUOTA_WEIGHT``), a priority outside int32. Odd but
    meaningful numbers are ``queue_warnings``, not errors."""
    errs = []
    if not q.metadata.name:
        errs.append("metadata.name is empty")
    res = q.spec.resources
    for name in QUEUE_RESOURCES:
        r = getattr(res, name) if res is not None else None
        if r is None:
            continue
        for field, v, top in (("quota", r.quota, MAX_QUEUE_AMOUNT), ("limit", r.limit, MAX_QUEUE_AMOUNT),
                              ("overQuotaWeight", r.over_quota_weight, MAX_OVER_QUOTA_WEIGHT)):
            if not math.isfinite(v) or abs(v) > top:
                errs.append(f"spec.resources.{name}.{field} is {v:g}: must be a number within +-{top:g}")
    if q.spec.priority is not None and not -2**31 <= q.spec.priority < 2**31:
        errs.append(f"spec.priority {q.spec.priority} is out of range (a 32-bit integer)")
    for field in ("preempt_min_runtime", "reclaim_min_runtime"):
        v = getattr(q.spec, field)
        if v and parse_duration(v) is None:
            camel = "preemptMinRuntime" if field.startswith("preempt") else "reclaimMinRuntime"
            errs.append(f"spec.{camel} {v!r} is not a duration")
    return errs


def queue_warnings(q: Queue) -> list[str]:
    """Values KAI accepts whose result is likely not what was meant, each with what it does.

    The queue is scheduled with them all the same (KAI's semantics); the status writer
    publishes these as a ``SpecWarning`` condition and an Event."""
    out = []
    res = q.spec.resources
    if res is None:
        return ["spec.resources is missing: quota, overQuotaWeight and limit are 0 for every "
                "resource, so no pod that requests gpu, cpu or memory can run in this queue"]
    for name in QUEUE_RESOURCES:
        r: QueueResource | None = getattr(res, name)
        path = f"spec.resources.{name}"
        if r is None:
            out.append(f"{path} is missing: its limit is 0, so no pod that requests {name} can run "
                       f"in this queue")
            continue
        if r.quota < 0 and r.quota != -1:
            out.append(f"{path}.quota is {r.quota:g}: "
                       + ("any negative memory quota means unlimited (-1)" if name == "memory" else
                          "a negative quota other than -1 lowers the queue's fair share by that much "
                          "and hands it to its siblings"))
        if r.limit < 0 and r.limit != -1:
            out.append(f"{path}.limit is {r.limit:g}: "
                       + ("any negative memory limit means no limit (-1)" if name == "memory" else
                          "a negative limit other than -1 blocks every pod that requests it"))
        elif r.limit == 0:
            out.append(f"{path}.limit is 0: no pod that requests {name} can run in this queue "
                       f"(-1 means no limit)")
        if r.over_quota_weight < 0:
            out.append(f"{path}.overQuotaWeight is {r.over_quota_weight:g}: negative weights are "
                       f"normalised by the sum of the siblings' weights as they are (alone, or with "
                       f"other negative weights, they act as positive ones; mixed with positive "
                       f"weights they shrink or cancel the over-quota share)")
        if r.limit >= 0 and r.quota >= 0 and r.limit < r.quota:
            out.append(f"{path}.limit {r.limit:g} is below quota {r.quota:g}: the limit wins, the "
                       f"queue never reaches its quota")
    return out


#: name of the synthetic root with ``--full-hierarchy-fairness=false`` (KAI's name)
PROJECT_LEVEL_ROOT = "default"


def project_level_queues(queues: list[Queue]) -> tuple[list[Queue], dict[str, str]]:
    """KAI's ``--full-hierarchy-fairness=false``: fairness between projects only.

    Every queue that names a parent is re-parented under one synthetic root,
    :data:`PROJECT_LEVEL_ROOT`, with unlimited quota and limit (-1) and weight 1 for gpu, cpu
    and memory; queues without a parent (departments) are left out, so their quotas and
    limits no longer bind and a job submitted to one finds no queue. A middle-level queue
    becomes a leaf sibling of its former children. Returns the queues and problems
    (name -> reason) for queues that cannot take part: a queue of the root's name.
    """
    unlimited = QueueResource(quota=-1, over_quota_weight=1, limit=-1)
    root = Queue(metadata=ObjectMeta(name=PROJECT_LEVEL_ROOT),
                 spec=QueueSpec(resources=QueueResources(gpu=unlimited, cpu=unlimited, memory=unlimited)))
    out = [root]
    problems: dict[str, str] = {}
    for q in queues:
        if not q.spec.parent_queue:
            continue
        if q.metadata.name == PROJECT_LEVEL_ROOT:
            problems[q.metadata.name] = (f"the queue name {PROJECT_LEVEL_ROOT!r} is taken by the synthetic root "
                                         f"of --full-hierarchy-fairness=false")
            continue
        out.append(msgspec.structs.replace(q, spec=msgspec.structs.replace(q.spec, parent_queue=PROJECT_LEVEL_ROOT)))
    return out, problems


class QueueTree:
    """The usable queue hierarchy of one snapshot.

    Queues whose parent is missing (orphans), or that sit in a parent cycle, are left out
    together with their subtrees, and each gets a reason in ``problems`` (name -> text) so
    the status writer can put an Event and a condition on it.
    """

    def __init__(self, queues: list[Queue]) -> None:
        self.queues: dict[str, QueueInfo] = {}
        self.problems: dict[str, str] = {}
        infos = {}
        for q in queues:
            errs = validate_queue(q)
            name = q.metadata.name
            if errs:
                self.problems[name] = "; ".join(errs)
                continue
            infos[name] = QueueInfo(q)
        # cycles and orphans
        state: dict[str, str] = {}
        for name in infos:
            path = []
            cur = name
            while cur and cur in infos and cur not in state:
                state[cur] = "visiting"
                path.append(cur)
                cur = infos[cur].parent
            if cur and cur in infos and state.get(cur) == "visiting":
                cycle = path[path.index(cur):] + [cur]
                for n in path[path.index(cur):]:
                    self.problems[n] = "queue parent cycle: " + " -> ".join(cycle)
                bad_tail = path[: path.index(cur)]
                for n in bad_tail:
                    self.problems.setdefault(n, f"an ancestor queue {cur!r} is in a parent cycle")
            elif cur and cur not in infos:
                reason = (f"parent queue {cur!r} is invalid: {self.problems[cur]}" if cur in self.problems
                          else f"parent queue {cur!r} does not exist")
                for n in path:
                    self.problems.setdefault(n, reason if infos[n].parent == cur
                                             else f"orphaned: ancestor {cur!r} does not exist")
            elif cur and cur in self.problems:
                for n in path:
                    self.problems.setdefault(n, f"an ancestor queue {cur!r} is unusable: {self.problems[cur]}")
            for n in path:
                state[n] = "done"
        for name, info in infos.items():
            if name not in self.problems:
                self.queues[name] = info
        for info in self.queues.values():
            if info.parent:
                self.queues[info.parent].children.append(info.name)
        for info in self.queues.values():
            info.children.sort()

    def __contains__(self, name: str) -> bool:
        return name in self.queues

    def get(self, name: str) -> QueueInfo | None:
        return self.queues.get(name)

    def roots(self) -> list[QueueInfo]:
        """Top-level queues by creation then name (computed once: the tree does not change
        after it is built; callers get their own list)."""
        got = self.__dict__.get("_roots")
        if got is None:
            got = self._roots = sorted((q for q in self.queues.values() if not q.parent),
                                       key=lambda q: (q.creation, q.name))
        return list(got)

    def ancestors(self, name: str) -> list[QueueInfo]:
        """The queue itself, then its parent, up to the root."""
        out = []
        q = self.queues.get(name)
        while q is not None:
            out.append(q)
            q = self.queues.get(q.parent) if q.parent else None
        return out

    def leveled(self, a: str, b: str) -> tuple[str, str] | None:
        """The ancestors of queues ``a`` and ``b`` (themselves included) that are siblings
        under their lowest common ancestor (KAI's getLeveledQueues); None when one is an
        ancestor of the other."""
        pa = [q.name for q in reversed(self.ancestors(a))]
        pb = [q.name for q in reversed(self.ancestors(b))]
        i = 0
        while i < len(pa) and i < len(pb) and pa[i] == pb[i]:
            i += 1
        if i >= len(pa) or i >= len(pb):
            return None
        return pa[i], pb[i]

    def topological(self) -> list[QueueInfo]:
        """Parents before children, siblings by creation then name (computed once, as
        ``roots``; callers get their own list)."""
        got = self.__dict__.get("_topological")
        if got is None:
            got = []
            stack = list(reversed(self.roots()))
            while stack:
                q = stack.pop()
                got.append(q)
                kids = sorted((self.queues[c] for c in q.children), key=lambda c: (c.creation, c.name))
                stack.extend(reversed(kids))
            self._topological = got
        return list(got)
