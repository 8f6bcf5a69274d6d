"""PodGroupInfo: a job (gang) with its pods, queue, priority and PodSets.

A PodSet is a leaf SubGroup with its own ``minAvailable``; a PodGroup without subGroups
has one PodSet holding every pod with ``minMember``. The SubGroups also form a tree
(``SubGroupNode``, rooted at the job) that carries each level's topology constraint; the
allocate action walks it (KAI's SubGroupSet recursion). Everything here is plain
bookkeeping over PodInfo statuses; the actions decide what to allocate or evict.

``subgroup_tree_error`` is KAI's PodGroup webhook rule for ``spec.subGroups`` (a forest: unique
names, parents that exist, no cycle), shared by the cache (a PodGroup breaking it waits with
that reason) and the validating webhook (:mod:`kai.admission.crd_validation`).
"""
from __future__ import annotations

from collections.abc import Iterable

from kai.api import constants as C
from kai.api.k8s import PodGroup
from kai.api.pod_info import PodInfo, parse_time

S = C.PodStatus


def subgroup_tree_error(subgroups: Iterable[tuple[str, str | None]]) -> str:
    """KAI's message for the first way ``(name, parent)`` pairs fail to form a forest, or "".

    Checked in KAI's order: a repeated name ("duplicate subgroup name A"), then a parent that
    is not one of the SubGroups ("parent X of B was not found"), then a parent chain that comes
    back to where it started ("cycle detected in subgroups"). ``parent`` None is a root.
    """
    parent_of: dict[str, str | None] = {}
    for name, parent in subgroups:
        if name in parent_of:
            return f"duplicate subgroup name {name}"
        parent_of[name] = parent
    for name, parent in parent_of.items():
        if parent is not None and parent not in parent_of:
            return f"parent {parent} of {name} was not found"
    done: set[str] = set()                  # names known to reach a root
    for start in parent_of:
        path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done:
            if node in path:
                return "cycle detected in subgroups"
            path.add(node)
            node = parent_of[node]
        done |= path
    return ""


class PodSet:
    """Pods of one leaf SubGroup (or the whole job) with a gang minimum."""

    __slots__ = ("name", "min_available", "tasks", "leaf")

    def __init__(self, name: str, min_available: int) -> None:
        self.name = name
        self.min_available = min_available if min_available > 0 else 0
        self.tasks: list[PodInfo] = []
        self.leaf: SubGroupNode | None = None       # its node in the job's SubGroup tree

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


class SubGroupNode:
    """One node of the job's SubGroup tree: the root (the job itself, name ``""``), an inner
    SubGroup set, or a leaf whose pods form ``podset``. ``topology_constraint`` is the
    node's own (a TopologyConstraint or None); children inherit nothing implicitly -- the
    allocate walk narrows the node set level by level instead."""

    __slots__ = ("name", "parent", "children", "podset", "topology_constraint")

    def __init__(self, name: str, topology_constraint=None, parent: "SubGroupNode | None" = None) -> None:
        self.name = name
        self.parent = parent
        # a leaf's is the shared empty tuple (most nodes are leaves); add_child makes a list
        self.children: "list[SubGroupNode] | tuple" = ()
        self.podset: PodSet | None = None
        tc = topology_constraint
        self.topology_constraint = tc if tc is not None and tc.topology else None

    @property
    def is_leaf(self) -> bool:
        return self.podset is not None

    def add_child(self, child: "SubGroupNode") -> None:
        if self.children:
            self.children.append(child)
        else:
            self.children = [child]

    def podsets(self) -> list[PodSet]:
        """The PodSets under this node (itself when a leaf), depth first."""
        if self.podset is not None:
            return [self.podset]
        out: list[PodSet] = []
        for c in self.children:
            out.extend(c.podsets())
        return out

    def has_constraints(self) -> bool:
        return self.topology_constraint is not None or any(c.has_constraints() for c in self.children)

    def __repr__(self) -> str:
        return f"SubGroupNode({self.name!r}, children={len(self.children)}, leaf={self.is_leaf})"


def default_task_order_key(t: PodInfo) -> tuple:
    """Within a PodSet: higher ``kai.scheduler/task-priority`` first, then older, then name."""
    return (-t.task_priority, t.creation, t.name)


class PodGroupInfo:
    """A schedulable job: the PodGroup spec resolved (queue, priority, preemptibility) plus pods."""

    __slots__ = ("key", "name", "namespace", "uid", "queue", "priority", "priority_class",
                 "preemptible", "min_member", "creation", "tasks", "podsets", "invalid_reasons",
                 "last_start", "stale_since", "scheduling_backoff", "topology_constraint",
                 "subgroups", "podgroup", "root_subgroup", "_lone")

    def __init__(self, pg: PodGroup, priority: int, preemptible: bool) -> None:
        meta = pg.metadata
        spec = pg.spec
        self.podgroup = pg
        self.name = name = meta.name
        self.namespace = ns = meta.namespace or "default"
        self.key = key = f"{ns}/{name}"
        self.uid = meta.uid or key
        self.queue = spec.queue
        self.priority = priority
        self.priority_class = spec.priority_class_name
        self.preemptible = preemptible
        mm = spec.min_member
        self.min_member = mm if mm > 1 else 1
        self.creation = parse_time(meta.creation_timestamp)
        self.tasks: dict[str, PodInfo] = {}
        self.invalid_reasons: list[str] = []
        ann = meta.annotations
        if ann:
            self.last_start = parse_time(ann.get(C.LAST_START_TIMESTAMP))
            self.stale_since = parse_time(ann.get(C.STALE_TIMESTAMP))
        else:
            self.last_start = self.stale_since = 0.0          # parse_time of nothing
        self.scheduling_backoff = spec.scheduling_backoff
        self.topology_constraint = spec.topology_constraint
        self.subgroups = spec.sub_groups
        self.podsets: dict[str, PodSet] = {}
        self._lone: object = False                # ``lone_task`` memo; False = not known
        self._build_podsets()

    def _build_podsets(self) -> None:
        root = self.root_subgroup = SubGroupNode("", self.topology_constraint)
        leaves = []
        if self.subgroups:
            parents = {sg.parent for sg in self.subgroups if sg.parent}
            leaves = [sg for sg in self.subgroups if sg.name not in parents]
        if leaves:
            nodes: dict[str, SubGroupNode] = {"": root}
            for sg in self.subgroups:
                if sg.name and sg.name not in nodes:
                    nodes[sg.name] = SubGroupNode(sg.name, sg.topology_constraint)
            for sg in self.subgroups:
                node = nodes.get(sg.name) if sg.name else None     # "" is the root
                if node is None or node.parent is not None:
                    continue
                parent = nodes.get(sg.parent or "", root)
                # a parent chain that loops back is cut at the root
                p = parent
                while p is not None and p is not node:
                    p = p.parent
                node.parent = root if p is node else parent
                node.parent.add_child(node)
            for sg in leaves:
                ps = self.podsets[sg.name] = PodSet(sg.name, sg.min_member)
                leaf = nodes.get(sg.name) if sg.name else None
                if leaf is None:
                    leaf = SubGroupNode(sg.name, sg.topology_constraint, root)
                    root.add_child(leaf)
                leaf.podset = ps
                ps.leaf = leaf
        else:
            ps = self.podsets[""] = PodSet("", self.min_member)
            leaf = ps.leaf = SubGroupNode("", None, root)
            leaf.podset = ps
            root.children = [leaf]

    @property
    def leaf_nodes(self) -> dict[str, SubGroupNode]:
        """PodSet name -> its leaf in the SubGroup tree (made on each call: few callers)."""
        return {name: ps.leaf for name, ps in self.podsets.items()}

    def podset_of(self, task: PodInfo) -> PodSet:
        """The PodSet a task belongs to (same rule as ``add_task``)."""
        ps = self.podsets.get(task.subgroup) if task.subgroup else None
        if ps is None:
            ps = self.podsets.get("") or next(iter(self.podsets.values()))
        return ps

    def subgroup_node(self, podset: PodSet) -> SubGroupNode:
        """The tree node of a PodSet (its leaf)."""
        return podset.leaf

    # --- membership -------------------------------------------------------------------
    def add_task(self, task: PodInfo) -> None:
        self._lone = False
        task.job_key = self.key
        self.tasks[task.uid] = task
        self.podset_of(task).tasks.append(task)

    def add_tasks(self, tasks: list[PodInfo]) -> None:
        """``add_task`` for each of ``tasks`` in order (a bulk load's run of one job's pods)."""
        self._lone = False
        key, own = self.key, self.tasks
        for t in tasks:
            t.job_key = key
            own[t.uid] = t
        if any(t.subgroup for t in tasks):
            for t in tasks:
                self.podset_of(t).tasks.append(t)
        else:
            self.podset_of(tasks[0]).tasks.extend(tasks)

    def remove_task(self, uid: str) -> None:
        task = self.tasks.pop(uid, None)
        if task is None:
            return
        self._lone = False
        for ps in self.podsets.values():
            if task in ps.tasks:
                ps.tasks.remove(task)

    # --- counts -----------------------------------------------------------------------
    def count(self, mask: int) -> int:
        return sum(1 for t in self.tasks.values() if t.status & mask)

    @property
    def active_allocated(self) -> int:
        return self.count(C.ACTIVE_ALLOCATED)

    def lone_task(self) -> PodInfo | None:
        """The job's only pod when the job is one pod in one PodSet of minimum <= 1 with no
        SubGroups and no topology constraint -- a single-pod job, which the actions may take
        through their short paths -- else None. Memoized until a pod joins or leaves."""
        got = self._lone
        if got is not False:
            return got
        got = self._lone = self._find_lone()
        return got

    def _find_lone(self) -> PodInfo | None:
        if len(self.tasks) != 1 or self.subgroups or self.root_subgroup.topology_constraint is not None:
            return None
        if len(self.podsets) != 1:
            return None
        ps = next(iter(self.podsets.values()))
        if ps.min_available > 1 or len(ps.tasks) != 1:
            return None
        return ps.tasks[0]

    def is_ready(self) -> bool:
        """Every PodSet has enough alive, ungated pods to reach its minimum (FilterUnready)."""
        for ps in self.podsets.values():
            alive = sum(1 for t in ps.tasks if t.status & C.ALIVE and t.status != S.GATED)
            if alive < ps.min_available:
                return False
        return True

    def has_pending(self) -> bool:
        if len(self.tasks) == 1:
            for t in self.tasks.values():
                return t.status == S.PENDING
        return any(t.status == S.PENDING for t in self.tasks.values())

    def is_gang_satisfied(self) -> bool:
        return all(ps.gang_satisfied for ps in self.podsets.values())

    def is_elastic(self) -> bool:
        return any(len(ps.tasks) > ps.min_available for ps in self.podsets.values())

    def tasks_to_allocate(self, task_order_key=default_task_order_key, podset_order_key=None) -> list[PodInfo]:
        """KAI's GetTasksToAllocate: the gang chunk of every unsatisfied PodSet, else one extra task.

        An unsatisfied PodSet contributes ``minAvailable - activeAllocated`` pending tasks;
        when all are satisfied, the first PodSet (in PodSet order) with a pending task gives one.
        A single-pod job's chunk is its pod while it is pending, whatever the orders.
        """
        if len(self.podsets) == 1 and len(self.tasks) == 1:
            for t in self.tasks.values():
                return [t] if t.status == S.PENDING else []
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
