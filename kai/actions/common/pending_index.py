"""PendingIndex: the candidates of the allocate-like actions, kept across cycles.

In a backlog held back by quota or limits, most pending jobs, their admission and their job
order do not change from one cycle to the next. :class:`PendingIndex` (kept in the
Scheduler's CycleMemory) holds the jobs ``schedulable_jobs(ssn, check_capacity=False)``
admits, by leaf queue: each leaf's entries sorted by job order, the look-alike runs
``JobsOrderByQueues.skip_alike`` found in them, and its single-pod jobs grouped by the one
capacity question they share. :func:`current_index` brings it up to date:

- the jobs looked at again are those the cluster state changed since the index was last
  brought up to date (``ClusterState.changed_since``: created, deleted, pods or spec
  changed, commits included), plus those a session touched (``Session.touched_jobs``:
  virtual changes, which the state's change numbers do not see), this one's and the last
  one's; each is admitted or not by ``schedulable_jobs`` itself, and only the leaves they
  leave or join are sorted and grouped again (their runs forgotten);
- everything is rebuilt when the config, the job order's key fns or the queue tree changed.

Every answer kept is a function of the jobs it covers: a job's admission and its job order
key read only the job (and the queue tree), a look-alike run only the jobs in it.
Users: reclaim and preempt (kai.actions.common.shared_walk) and allocate's and
consolidation's capacity pass (``capacity_checked``).
"""
from __future__ import annotations

import itertools
from operator import itemgetter

from kai.api import constants as C

_PENDING = C.PodStatus.PENDING
_first = itemgetter(0)


class KeptIndex:
    """A per-job index kept across sessions in the Scheduler's CycleMemory (attribute
    ``memory_attr``), valid for the cluster state, config, job-order key fns and queue tree it
    was built under, as of that state's change number ``seq``. Subclasses say which jobs a full build
    looks at (``initial_keys``) and how to look at some jobs again (``update``)."""

    __slots__ = ("state", "config", "fns", "tree", "seq", "touched")
    memory_attr = ""

    def __init__(self, state, config, fns: tuple, tree: tuple) -> None:
        self.state = state                              # the ClusterState it indexes
        self.config = config
        self.fns = fns
        self.tree = tree
        self.seq = -1
        #: the touched-jobs set of the last session that brought the index up to date (the
        #: live set: what that session touched after it is seen too)
        self.touched: set[str] = set()

    def initial_keys(self, ssn) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, ssn, keys, *args) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def replay(self, ssn) -> None:
        """What a full build records in the session, for the jobs not looked at again."""

    @classmethod
    def current(cls, ssn, *args):
        """The session's index, up to date with the jobs as they are now: rebuilt when the
        config, key fns or queue tree changed, else brought up to date with the jobs the state
        changed since (``ClusterState.changed_since``) and those this session and the last
        one touched."""
        state = ssn.state
        seq = getattr(state, "change_seq", None)
        fns = tuple((getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn)))
                    for fn in ssn.job_order_keys)
        tree = tree_signature(ssn)
        idx = getattr(ssn.memory, cls.memory_attr)
        if (seq is None or idx is None or idx.state is not state or idx.config is not ssn.config
                or idx.fns != fns or idx.tree != tree or idx.seq > seq):
            idx = cls(state, ssn.config, fns, tree)
            if seq is not None:
                setattr(ssn.memory, cls.memory_attr, idx)
            idx.update(ssn, idx.initial_keys(ssn), *args)
        else:
            changed = set(state.changed_since(idx.seq))
            changed.update(idx.touched)
            changed.update(ssn.touched_jobs)
            if changed:
                idx.update(ssn, sorted(changed), *args)
            idx.replay(ssn)
        idx.seq = seq if seq is not None else -1
        idx.touched = ssn.touched_jobs
        return idx


def tree_signature(ssn) -> tuple:
    """What the indexes read from the session's queue tree: each queue's parent and leafness,
    and the problems of those left out (once per tree: a tree does not change once built)."""
    tree = ssn.queues
    got = tree.__dict__.get("signature")       # (a tree is kept across sessions: session_queue_tree)
    if got is None:
        got = tree.__dict__["signature"] = (
            tuple((q.name, q.parent, q.is_leaf) for q in ssn.queues.topological()),
            tuple(sorted(ssn.queues.problems.items())))
    return got


class PendingIndex(KeptIndex):
    """The candidates of the allocate-like actions (see the module docstring)."""

    __slots__ = ("leaf_of", "members", "leaves", "runs", "errors", "counter", "groups", "singles", "held")
    memory_attr = "pending_index"

    def __init__(self, state, config, fns: tuple, tree: tuple) -> None:
        super().__init__(state, config, fns, tree)
        self.leaf_of: dict[str, str] = {}           # candidate job key -> its leaf queue
        self.members: dict[str, set[str]] = {}      # leaf -> candidate job keys
        #: leaf -> entries (job order key, unique int, job), sorted
        self.leaves: dict[str, list] = {}
        #: leaf -> look-alike runs in its entries (JobsOrderByQueues' ``runs``)
        self.runs: dict[str, dict] = {}
        #: job key -> why a job with a pending pod is left out (invalid, its queue, not ready)
        self.errors: dict[str, list[str]] = {}
        self.counter = itertools.count()
        #: leaf -> (preemptible, request bytes) -> its single-pod jobs without GPU sharing or
        #: DRA claims, in job order: one capacity question each (``capacity_checked``)
        self.groups: dict[str, dict[tuple, list]] = {}
        #: leaf -> its other candidates, in job order (asked one by one)
        self.singles: dict[str, list] = {}
        #: preemptible_only -> (the (group, refusal) pairs ``capacity_checked`` last found
        #: held back, in order, and their fit errors as one dict {job key: [refusal]}): a
        #: held backlog is refused the same way cycle after cycle, and then its fit errors
        #: are merged in one call
        self.held: dict[bool, tuple[list, dict]] = {}

    def initial_keys(self, ssn) -> list[str]:
        return [j.key for j in ssn.pending_jobs]

    def replay(self, ssn) -> None:
        ssn.fit_errors.update(self.errors)

    def update(self, ssn, keys, admit) -> None:
        """Look at ``keys`` again (``admit``: ``schedulable_jobs``); sort the leaves they
        leave or join and group their single-pod jobs by capacity question."""
        jobs = ssn.jobs
        errors = ssn.fit_errors
        affected: set[str] = set()
        fresh = []
        for key in keys:
            leaf = self.leaf_of.pop(key, None)
            if leaf is not None:
                self.members[leaf].discard(key)
                affected.add(leaf)
            self.errors.pop(key, None)
            job = jobs.get(key)
            if job is not None:
                fresh.append(job)
        before = {job.key: errors.get(job.key) for job in fresh}
        admitted = {id(j) for j in admit(ssn, check_capacity=False, jobs=fresh)}
        for job in fresh:
            if id(job) in admitted:
                self.leaf_of[job.key] = job.queue
                self.members.setdefault(job.queue, set()).add(job.key)
                affected.add(job.queue)
            else:
                why = errors.get(job.key)
                if why is not None and why is not before[job.key]:      # recorded just now
                    self.errors[job.key] = why
        for leaf in affected:
            keys_in = self.members.get(leaf)
            if not keys_in:
                for kept in (self.members, self.leaves, self.runs, self.groups, self.singles):
                    kept.pop(leaf, None)
                continue
            entries = [(ssn.job_order_key(jobs[k]), next(self.counter), jobs[k]) for k in keys_in]
            entries.sort(key=_first)        # (stable, arrival numbers in list order: as a full sort)
            self.leaves[leaf] = entries
            self.runs[leaf] = {}
            groups: dict[tuple, list] = {}
            singles = []
            for _, _, job in entries:
                lone = job.lone_task()
                if (lone is not None and lone.gpu_sharing is None and lone.status == _PENDING
                        and not lone.pod.spec.resource_claims):
                    groups.setdefault((job.preemptible, lone.req.tobytes()), []).append(job)
                else:
                    singles.append(job)
            self.groups[leaf] = groups
            self.singles[leaf] = singles


def fill_runs(idx: PendingIndex, alike) -> None:
    """Find every look-alike run a walk that passes over copies would find in the index's
    leaves (``JobsOrderByQueues.skip_alike``: after the job at ``pos - 1``, the jobs from
    ``pos`` on that ``alike`` pairs with it), for the leaves that have none recorded yet:
    each run's head, then the end of its run, one comparison a job. The records are facts
    about the leaf's list (a leaf sorted again loses them), so a walk finds the same ends it
    would have compared its way to. Used by ``Scheduler.warm``."""
    for leaf, entries in idx.leaves.items():
        memo = idx.runs.setdefault(leaf, {})
        if memo:
            continue
        n = len(entries)
        pos = 1
        while pos <= n:
            head = entries[pos - 1][2]
            i = pos
            while i < n and alike(head, entries[i][2]):
                i += 1
            memo[(alike, pos)] = i
            pos = i + 1


def current_index(ssn, admit) -> PendingIndex:
    """The session's PendingIndex, up to date (``admit``: ``kai.actions.allocate.
    schedulable_jobs``); the fit errors of the jobs it leaves out are recorded in the session."""
    return PendingIndex.current(ssn, admit)


def capacity_checked(ssn, idx: PendingIndex, admit, preemptible_only: bool = False) -> list:
    """``schedulable_jobs(ssn)`` (capacity checked) from the index: one capacity question per
    group of single-pod jobs that share it (the answer then depends only on queue,
    preemptibility and request: ``Session.capacity_by_request``), every other candidate
    asked through ``admit``; the fit errors recorded as ``schedulable_jobs`` records them.
    ``preemptible_only``: non-preemptible jobs left out first, nothing recorded for them."""
    out = []
    refused = []                          # (group, refusal), in index order
    over_capacity = ssn.is_job_over_capacity
    for groups in idx.groups.values():
        for (preemptible, _), jobs in groups.items():
            if preemptible_only and not preemptible:
                continue
            head = jobs[0]
            over = over_capacity(head, [head.lone_task()])
            if over:
                refused.append((jobs, over))
            else:
                out.extend(jobs)
    last = idx.held.get(preemptible_only)
    if last is None or len(last[0]) != len(refused) or \
            not all(a[0] is b[0] and a[1] == b[1] for a, b in zip(last[0], refused)):
        errors: dict[str, list[str]] = {}
        for jobs, over in refused:
            # one list for the group (read-only to every reader): tens of thousands of held
            # jobs would otherwise leave as many new lists for the cyclic collector
            reasons = [over]
            for job in jobs:
                errors[job.key] = reasons
        last = idx.held[preemptible_only] = (refused, errors)
    ssn.fit_errors.update(last[1])
    singles = [job for jobs in idx.singles.values() for job in jobs
               if job.preemptible or not preemptible_only]
    if singles:
        out.extend(admit(ssn, check_capacity=True, jobs=singles))
    return out


__all__ = ["KeptIndex", "PendingIndex", "capacity_checked", "current_index", "fill_runs", "tree_signature"]
