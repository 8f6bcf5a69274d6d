"""PodGroupInfo: a job (gang) with its pods, queue, priority and PodSets.

A PodSet is a leaf SubGroup with its own ``minAvailable``; a PodGroup without subGroups
has one PodSet holding every pod with ``minMember``. Everything here is plain bookkeeping
over PodInfo statuses; the actions decide what to allocate or evict.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.k8s import PodGroup
from kai.api.pod_info import PodInfo, parse_time

S = C.PodStatus


class PodSet:
    """Pods of one leaf SubGroup (or the whole job) with a gang minimum."""

    __slots__ = ("name", "min_available", "tasks")

    def __init__(self, name: str, min_available: int) -> None:
        self.name = name
        self.min_available = min_available if min_available > 0 else 0
        self.tasks: list[PodInfo] = []

    def count(self, mask: int) -> int:
        return sum(1 for t in self.tasks if t.status & mask)

    @property
    def active_allocated(self) -> int:
        return self.count(C.ACTIVE_ALLOCATED)

    @property
    def gang_satisfied(self) -> bool:
        return self.active_allocated >= self.min_available

    def __repr__(self) -> str:
        return f"PodSet({self.name!r}, min={self.min_available}, tasks={len(self.tasks)})"


def default_task_order_key(t: PodInfo) -> tuple:
    """Within a PodSet: higher ``kai.scheduler/task-priority`` first, then older, then name."""
    return (-t.task_priority, t.creation, t.name)


class PodGroupInfo:
    """A schedulable job: the PodGroup spec resolved (queue, priority, preemptibility) plus pods."""

    __slots__ = ("key", "name", "namespace", "uid", "queue", "priority", "priority_class",
                 "preemptible", "min_member", "creation", "tasks", "podsets", "invalid_reasons",
                 "last_start", "stale_since", "scheduling_backoff", "topology_constraint",
                 "subgroups", "podgroup")

    def __init__(self, pg: PodGroup, priority: int, preemptible: bool) -> None:
        meta = pg.metadata
        self.podgroup = pg
        self.name = meta.name
        self.namespace = meta.namespace or "default"
        self.key = f"{self.namespace}/{self.name}"
        self.uid = meta.uid or self.key
        self.queue = pg.spec.queue
        self.priority = priority
        self.priority_class = pg.spec.priority_class_name
        self.preemptible = preemptible
        mm = pg.spec.min_member
        self.min_member = mm if mm > 1 else 1
        self.creation = parse_time(meta.creation_timestamp)
        self.tasks: dict[str, PodInfo] = {}
        self.invalid_reasons: list[str] = []
        self.last_start = parse_time(meta.annotations.get(C.LAST_START_TIMESTAMP))
        self.stale_since = parse_time(meta.annotations.get(C.STALE_TIMESTAMP))
        self.scheduling_backoff = pg.spec.scheduling_backoff
        self.topology_constraint = pg.spec.topology_constraint
        self.subgroups = pg.spec.sub_groups
        self.podsets: dict[str, PodSet] = {}
        self._build_podsets()

    def _build_podsets(self) -> None:
        leaves = []
        if self.subgroups:
            parents = {sg.parent for sg in self.subgroups if sg.parent}
            leaves = [sg for sg in self.subgroups if sg.name not in parents]
        if leaves:
            for sg in leaves:
                self.podsets[sg.name] = PodSet(sg.name, sg.min_member)
        else:
            self.podsets[""] = PodSet("", self.min_member)

    # --- membership -------------------------------------------------------------------
    def add_task(self, task: PodInfo) -> None:
        task.job_key = self.key
        self.tasks[task.uid] = task
        ps = self.podsets.get(task.subgroup) if task.subgroup else None
        if ps is None:
            ps = self.podsets.get("") or next(iter(self.podsets.values()))
        ps.tasks.append(task)

    def remove_task(self, uid: str) -> None:
        task = self.tasks.pop(uid, None)
        if task is None:
            return
        for ps in self.podsets.values():
            if task in ps.tasks:
                ps.tasks.remove(task)

    # --- counts -----------------------------------------------------------------------
    def count(self, mask: int) -> int:
        return sum(1 for t in self.tasks.values() if t.status & mask)

    @property
    def active_allocated(self) -> int:
        return self.count(C.ACTIVE_ALLOCATED)

    def is_ready(self) -> bool:
        """Every PodSet has enough alive, ungated pods to reach its minimum (FilterUnready)."""
        for ps in self.podsets.values():
            alive = sum(1 for t in ps.tasks if t.status & C.ALIVE and t.status != S.GATED)
            if alive < ps.min_available:
                return False
        return True

    def has_pending(self) -> bool:
        return any(t.status == S.PENDING for t in self.tasks.values())

    def is_gang_satisfied(self) -> bool:
        return all(ps.gang_satisfied for ps in self.podsets.values())

    def is_elastic(self) -> bool:
        return any(len(ps.tasks) > ps.min_available for ps in self.podsets.values())

    def tasks_to_allocate(self, task_order_key=default_task_order_key, podset_order_key=None) -> list[PodInfo]:
        """KAI's GetTasksToAllocate: the gang chunk of every unsatisfied PodSet, else one extra task.

        An unsatisfied PodSet contributes ``minAvailable - activeAllocated`` pending tasks;
        when all are satisfied, the first PodSet (in PodSet order) with a pending task gives one.
        """
        podsets = list(self.podsets.values())
        if podset_order_key is not None:
            podsets.sort(key=podset_order_key)
        else:
            podsets.sort(key=lambda p: (p.gang_satisfied, p.active_allocated / max(p.min_available, 1), p.name))
        chunk: list[PodInfo] = []
        for ps in podsets:
            need = ps.min_available - ps.active_allocated
            if need > 0:
                pending = sorted((t for t in ps.tasks if t.status == S.PENDING), key=task_order_key)
                chunk.extend(pending[:need])
        if chunk or any(not ps.gang_satisfied for ps in podsets):
            return chunk
        for ps in podsets:
            pending = [t for t in ps.tasks if t.status == S.PENDING]
            if pending:
                return [min(pending, key=task_order_key)]
        return []

    def __repr__(self) -> str:
        return f"PodGroupInfo({self.key}, queue={self.queue}, pri={self.priority}, min={self.min_member}, tasks={len(self.tasks)})"
