"""Victim selection shared by reclaim, preempt (and consolidation): who goes first, and how much.

``tasks_to_evict`` is KAI's GetTasksToEvict: an elastic victim (a PodSet above its
``minAvailable``) gives one pod, the last in task order; otherwise the whole gang goes, with
the task order reversed so leaders go last.

``VictimsOrderByQueues`` is KAI's victim queue (``JobsOrderByQueues`` with ``VictimQueue=true``):
inverted queue order down the queue tree (the queue that compares *last* gives first, so the
most over-fair-share queue is drained first) and inverted job order within a leaf (lowest
priority, newest first). A victim that still has pods after giving a chunk is pushed back
and competes again with its new order key. Candidates are packed once per action
(``VictimCandidates``); each preemptor then gets a cheap view with its own filter, applied
lazily when a victim comes up, so a preemptor that needs few victims never filters them all.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
from typing import Callable

import numpy as np

from kai.actions.common.pending_index import KeptIndex
from kai.api import constants as C
from kai.api.pod_info import PodInfo
from kai.api.podgroup_info import PodGroupInfo
from kai.api.quota import quota_vector

_EPS = 1e-9


def capacity_blocker(ssn, job: PodGroupInfo, tasks: list[PodInfo]) -> str | None:
    """The lowest queue on the job's path whose limit the chunk would exceed *now*, or None.

    A preemptor or reclaimer blocked only by a limit is judged after its victims' resources
    are released (KAI checks the queue capacity inside each victim scenario), so the actions
    do not drop such a job up front. Victims can relieve a limit only from inside the limited
    queue's subtree: ``victims_can_relieve`` uses this to skip hopeless searches."""
    shares = ssn.shares
    if shares is None:
        return None
    req = sum((quota_vector(t, ssn.registry.mig_columns()) for t in tasks), np.zeros(3))
    for q in ssn.queues.ancestors(job.queue):
        alloc = shares.allocated.get(q.name)
        if alloc is None:
            continue
        for i in range(3):
            lim = q.limit[i]
            if req[i] > 0 and lim != -1 and alloc[i] + req[i] > lim + _EPS:
                return q.name
    return None


def victims_can_relieve(ssn, blocker: str, victim_queues) -> bool:
    """Whether some victim leaf queue sits under ``blocker`` (so evicting it lowers that usage)."""
    for vq in victim_queues:
        if any(a.name == blocker for a in ssn.queues.ancestors(vq)):
            return True
    return False


def nonpreemptible_over_quota(ssn, job: PodGroupInfo, tasks: list[PodInfo]) -> bool:
    """KAI's IsNonPreemptibleJobOverQueueQuota: a non-preemptible chunk would take its queue,
    or an ancestor, over its quota (in-quota resources only). False for preemptible jobs."""
    shares = ssn.shares
    if job.preemptible or shares is None:
        return False
    req = sum((quota_vector(t, ssn.registry.mig_columns()) for t in tasks), np.zeros(3))
    for q in ssn.queues.ancestors(job.queue):
        anp = shares.allocated_nonpreemptible.get(q.name)
        des = shares.deserved.get(q.name)
        if anp is None or des is None:
            continue
        for i in range(3):
            if req[i] > 0 and des[i] != -1 and anp[i] + req[i] > des[i] + _EPS:
                return True
    return False


def evictable(t: PodInfo) -> bool:
    """On its node and allocated (Allocated|Binding|Bound|Running): a pod an eviction can free."""
    return bool(t.status & C.ALLOCATED) and bool(t.node_name)


def has_evictable(job: PodGroupInfo) -> bool:
    return any(evictable(t) for t in job.tasks.values())


def tasks_to_evict(job: PodGroupInfo, task_order_key) -> list[PodInfo]:
    """KAI's GetTasksToEvict: one pod of the first PodSet above its minimum, else the whole gang."""
    for name in sorted(job.podsets):
        ps = job.podsets[name]
        if ps.active_allocated > ps.min_available:
            cands = [t for t in ps.tasks if evictable(t)]
            if cands:
                return [max(cands, key=task_order_key)]
    return sorted((t for t in job.tasks.values() if evictable(t)), key=task_order_key, reverse=True)


def is_victim_candidate(ssn, job: PodGroupInfo) -> bool:
    """Preemptible, of a queue in the tree, with a pod an eviction can free."""
    return job.preemptible and job.queue in ssn.queues and has_evictable(job)


class VictimIndex(KeptIndex):
    """The victim candidates by queue, sorted by job order, kept across sessions
    (``CycleMemory.victim_index``; see kai.actions.common.pending_index.KeptIndex): a job is
    looked at again only when the state changed it or a session touched it."""

    __slots__ = ("queue_of", "members", "keys", "jobs")
    memory_attr = "victim_index"

    def __init__(self, state, config, fns: tuple, tree: tuple) -> None:
        super().__init__(state, config, fns, tree)
        self.queue_of: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}
        self.keys: dict[str, list] = {}          # queue -> sorted job order keys
        self.jobs: dict[str, list] = {}          # queue -> jobs in that order

    def initial_keys(self, ssn) -> list[str]:
        return list(ssn.jobs)

    def update(self, ssn, keys, *args) -> None:
        jobs = ssn.jobs
        affected: set[str] = set()
        for key in keys:
            q = self.queue_of.pop(key, None)
            if q is not None:
                self.members[q].discard(key)
                affected.add(q)
            job = jobs.get(key)
            if job is not None and is_victim_candidate(ssn, job):
                self.queue_of[key] = job.queue
                self.members.setdefault(job.queue, set()).add(key)
                affected.add(job.queue)
        for q in affected:
            members = self.members.get(q)
            if not members:
                for kept in (self.members, self.keys, self.jobs):
                    kept.pop(q, None)
                continue
            entries = sorted(((ssn.job_order_key(jobs[k]), jobs[k]) for k in members), key=lambda e: e[0])
            self.keys[q] = [e[0] for e in entries]
            self.jobs[q] = [e[1] for e in entries]


#: False: the candidates are collected afresh every time (the reference for the tests)
USE_INDEX = True


class VictimCandidates:
    """Preemptible jobs with evictable pods: per queue, sorted by job order (read only)."""

    def __init__(self, ssn, index: VictimIndex | None = None) -> None:
        self.ssn = ssn
        if index is not None:
            self.keys: dict[str, list] = dict(index.keys)      # queue -> sorted job order keys
            self.jobs: dict[str, list] = dict(index.jobs)      # queue -> jobs in that order
            return
        self.keys = {}
        self.jobs = {}
        by_queue: dict[str, list] = {}
        for job in ssn.jobs.values():
            if not is_victim_candidate(ssn, job):
                continue
            by_queue.setdefault(job.queue, []).append((ssn.job_order_key(job), job))
        for q, entries in by_queue.items():
            entries.sort(key=lambda e: e[0])
            self.keys[q] = [e[0] for e in entries]
            self.jobs[q] = [e[1] for e in entries]

    def order(self, queues: list[str], accept: Callable[[PodGroupInfo], bool]) -> "VictimsOrderByQueues":
        return VictimsOrderByQueues(self, [q for q in queues if q in self.jobs], accept)

    @classmethod
    def of(cls, ssn) -> "VictimCandidates":
        """The session's candidates: from the VictimIndex kept across cycles, handed to the
        next action (reclaim -> preempt) while no allocation event fired since (nothing read
        here can have moved: jobs change within a session only through Statement
        operations, each firing one)."""
        got = ssn.action_memo.get("victim_candidates")
        if got is None or got[0] != ssn.alloc_events:
            cands = cls(ssn, VictimIndex.current(ssn) if USE_INDEX else None)
            got = ssn.action_memo["victim_candidates"] = (ssn.alloc_events, cands)
        return got[1]


class VictimsOrderByQueues:
    """Pops victim chunks (lists of tasks) in KAI's inverted queue / job order."""

    def __init__(self, cands: VictimCandidates, queues: list[str], accept: Callable[[PodGroupInfo], bool]) -> None:
        self.ssn = cands.ssn
        self.cands = cands
        self.accept = accept
        self.tree = self.ssn.queues
        self._counter = itertools.count()
        self.excluded: set[str] = set()
        self.checked: dict[str, bool] = {}
        # heap entries: (-rank, counter, job); rank = position in ascending job order
        self.heaps: dict[str, list] = {}
        for q in queues:
            jobs = cands.jobs[q]
            h = [(-i, next(self._counter), j) for i, j in enumerate(jobs)]
            h.reverse()                         # already a valid min-heap on -rank
            self.heaps[q] = h
        self.active = set(self.heaps)
        #: inner queue name -> its children with an active leaf under them, in tree order: the
        #: walks visit only the paths to the given queues, not the whole tree
        self.kids: dict[str, list[str]] = {}
        busy: set[str] = set()
        for name in self.active:
            q = self.tree.get(name)
            if q is None or not q.is_leaf:
                continue
            while q.name not in busy:
                busy.add(q.name)
                parent = self.tree.get(q.parent) if q.parent else None
                if parent is None:
                    break
                self.kids.setdefault(parent.name, []).append(q.name)
                q = parent
        for parent, names in self.kids.items():
            if len(names) > 1:
                order = self.tree.get(parent).children
                names.sort(key=order.index)
        self.roots = [q.name for q in self.tree.roots() if q.name in busy]

    def _ok(self, job: PodGroupInfo) -> bool:
        if job.key in self.excluded:
            return False
        got = self.checked.get(job.key)
        if got is None:
            got = self.accept(job)
            self.checked[job.key] = got
        return got

    def _head(self, name: str) -> PodGroupInfo | None:
        q = self.tree.get(name)
        if q is None:
            return None
        if q.is_leaf:
            h = self.heaps.get(name)
            while h:
                job = h[0][2]
                if self._ok(job) and has_evictable(job):
                    return job
                heapq.heappop(h)
            return None
        best = self._worst_child(self.kids.get(name, ()))
        return best[1] if best else None

    def _worst_child(self, names: list[str]):
        worst = None
        for name in names:
            head = self._head(name)
            if head is None:
                continue
            cand = (self.tree.get(name), head)
            if worst is None or self.ssn.queue_compare(cand[0], worst[0], cand[1], worst[1]) > 0:
                worst = cand
        return worst

    def pop_chunk(self) -> tuple[PodGroupInfo, list[PodInfo]] | None:
        """The next victim job and the pods it gives now; None when no victim is left."""
        worst = self._worst_child(self.roots)
        if worst is None:
            return None
        q = worst[0]
        while not q.is_leaf:
            q = self._worst_child(self.kids.get(q.name, ()))[0]
        job = heapq.heappop(self.heaps[q.name])[2]
        tasks = tasks_to_evict(job, self.ssn.task_order_key)
        return job, tasks

    def push_back(self, job: PodGroupInfo) -> None:
        """A victim that still has pods competes again, placed by its new job order key."""
        if not has_evictable(job) or job.key in self.excluded:
            return
        keys = self.cands.keys.get(job.queue)
        if keys is None:
            return
        rank = bisect.bisect_left(keys, self.ssn.job_order_key(job)) - 0.5
        heapq.heappush(self.heaps[job.queue], (-rank, next(self._counter), job))

    def exclude(self, job: PodGroupInfo) -> None:
        self.excluded.add(job.key)
