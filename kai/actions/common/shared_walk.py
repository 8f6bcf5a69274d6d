"""The pending walk of reclaim and preempt: built once, kept across actions and cycles.

Both actions walk the same jobs (``schedulable_jobs(ssn, check_capacity=False)``) in the same
job order, and in a backlog held back by quota or limits most of those jobs and their order do
not change from one cycle to the next. :class:`PendingIndex` (kept in the Scheduler's
CycleMemory) holds the candidates by leaf queue, each leaf's entries sorted by job order, and
the look-alike runs ``JobsOrderByQueues.skip_alike`` found in them. :func:`pending_walk` brings
it up to date before each walk and hands the walk its lists:

- the jobs looked at again are those the cluster state changed since the index was last
  brought up to date (``ClusterState.changed_since``: created, deleted, pods or spec
  changed, commits included), plus those a session touched (``Session.touched_jobs``:
  virtual changes, which the state's change numbers do not see), this one's and the last
  one's; each is admitted or not by ``schedulable_jobs`` itself, and only the leaves they
  leave or join are sorted again (their runs forgotten);
- everything is rebuilt when the config, the job order's key fns or the queue tree changed.

Within a session, the second action gets the first one's lists and runs as they are when no
allocation event fired since (nothing can have moved). Every answer kept is a function of
the jobs it covers: a job's admission and its job order key read only the job (and the queue
tree), and a look-alike run only the jobs in it.
"""
from __future__ import annotations

import itertools

from kai.actions.allocate import schedulable_jobs
from kai.actions.common.job_order import JobsOrderByQueues

_MEMO = "pending_walk"
#: False: every walk is built afresh (the reference the tests compare the kept walk with)
SHARE = True


class PendingIndex:
    """reclaim's and preempt's candidates as of cluster-state change number ``seq``."""

    __slots__ = ("config", "fns", "tree", "seq", "touched", "leaf_of", "members", "leaves", "runs",
                 "errors", "counter")

    def __init__(self, config, fns: tuple, tree: tuple) -> None:
        self.config = config
        self.fns = fns
        self.tree = tree
        self.seq = -1
        #: the touched-jobs set of the last session that brought the index up to date (the
        #: live set: what that session touched after it is seen too)
        self.touched: set[str] = set()
        self.leaf_of: dict[str, str] = {}           # candidate job key -> its leaf queue
        self.members: dict[str, set[str]] = {}      # leaf -> candidate job keys
        #: leaf -> entries (job order key, unique int, job), sorted
        self.leaves: dict[str, list] = {}
        #: leaf -> look-alike runs in its entries (JobsOrderByQueues' ``runs``)
        self.runs: dict[str, dict] = {}
        #: job key -> why a job with a pending pod is left out (invalid, its queue, not ready)
        self.errors: dict[str, list[str]] = {}
        self.counter = itertools.count()

    def update(self, ssn, keys) -> None:
        """Look at ``keys`` again; sort the leaves they leave or join."""
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
        admitted = {id(j) for j in schedulable_jobs(ssn, check_capacity=False, jobs=fresh)}
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
                self.members.pop(leaf, None)
                self.leaves.pop(leaf, None)
                self.runs.pop(leaf, None)
                continue
            entries = [(ssn.job_order_key(jobs[k]), next(self.counter), jobs[k]) for k in keys_in]
            entries.sort()
            self.leaves[leaf] = entries
            self.runs[leaf] = {}


def _tree_signature(ssn) -> tuple:
    """What admission reads from the queue tree: each queue's parent and leafness, and the
    problems of those left out."""
    return (tuple((q.name, q.parent, q.is_leaf) for q in ssn.queues.topological()),
            tuple(sorted(ssn.queues.problems.items())))


def _index(ssn) -> PendingIndex:
    """The session's PendingIndex, up to date with the jobs as they are now."""
    state = ssn.state
    seq = getattr(state, "change_seq", None)
    fns = tuple((getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn))) for fn in ssn.job_order_keys)
    tree = _tree_signature(ssn)
    idx = ssn.memory.pending_index
    if (seq is None or idx is None or idx.config is not ssn.config or idx.fns != fns or idx.tree != tree
            or idx.seq > seq):
        idx = PendingIndex(ssn.config, fns, tree)
        if seq is not None:
            ssn.memory.pending_index = idx
        idx.update(ssn, [j.key for j in ssn.pending_jobs])
    else:
        changed = set(state.changed_since(idx.seq))
        changed.update(idx.touched)
        changed.update(ssn.touched_jobs)
        if changed:
            idx.update(ssn, sorted(changed))
        ssn.fit_errors.update(idx.errors)
    idx.seq = seq if seq is not None else -1
    idx.touched = ssn.touched_jobs
    return idx


class _Shared:
    """One session's walk lists, for the next action while ``events`` is the session's counter."""

    __slots__ = ("events", "leaves", "runs")

    def __init__(self, events: int, leaves: dict, runs: dict) -> None:
        self.events = events
        self.leaves = leaves
        self.runs = runs


def pending_walk(ssn, depth: int | None) -> JobsOrderByQueues | None:
    """reclaim's and preempt's walk over the pending jobs (None when there are none)."""
    if not SHARE:
        jobs = schedulable_jobs(ssn, check_capacity=False)
        return JobsOrderByQueues(ssn, jobs, depth) if jobs else None
    memo = ssn.action_memo
    shared = memo.get(_MEMO)
    if shared is None or shared.events != ssn.alloc_events:
        idx = _index(ssn)
        shared = memo[_MEMO] = _Shared(ssn.alloc_events, dict(idx.leaves), idx.runs)
    if not shared.leaves:
        return None
    return JobsOrderByQueues(ssn, [], depth, sorted_leaves=shared.leaves, runs=shared.runs)


__all__ = ["PendingIndex", "pending_walk"]
