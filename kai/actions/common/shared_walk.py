"""The pending walk of reclaim and preempt, from the PendingIndex.

Both actions walk the same jobs (``schedulable_jobs(ssn, check_capacity=False)``) in the same
job order. :func:`pending_walk` hands each walk the index's sorted leaves and look-alike runs
(kai.actions.common.pending_index), brought up to date first; within a session, the second
action gets the first one's lists as they are when no allocation event fired since (nothing
can have moved), and when the first walk ran to its end without one, its pop sequence to
replay (``JobsOrderByQueues(replay=...)``: the same pops without asking the queue order
again, until the second action's own first allocation event).
"""
from __future__ import annotations

from kai.actions.allocate import schedulable_jobs
from kai.actions.common.job_order import JobsOrderByQueues
from kai.actions.common.pending_index import current_index

_MEMO = "pending_walk"
#: False: every walk is built afresh (the reference the tests compare the kept walk with)
SHARE = True


class _Shared:
    """One session's walk lists, for the next action while ``events`` is the session's
    counter, and the last walk made from them (its trace, once complete, is replayed)."""

    __slots__ = ("events", "leaves", "runs", "walk")

    def __init__(self, events: int, leaves: dict, runs: dict) -> None:
        self.events = events
        self.leaves = leaves
        self.runs = runs
        self.walk: JobsOrderByQueues | None = None


def pending_walk(ssn, depth: int | None) -> JobsOrderByQueues | None:
    """reclaim's and preempt's walk over the pending jobs (None when there are none)."""
    if not SHARE:
        jobs = schedulable_jobs(ssn, check_capacity=False)
        return JobsOrderByQueues(ssn, jobs, depth) if jobs else None
    memo = ssn.action_memo
    shared = memo.get(_MEMO)
    if shared is None or shared.events != ssn.alloc_events:
        idx = current_index(ssn, schedulable_jobs)
        shared = memo[_MEMO] = _Shared(ssn.alloc_events, dict(idx.leaves), idx.runs)
    if not shared.leaves:
        return None
    last = shared.walk
    replay = last.trace if (last is not None and last.trace_complete and last.depth == depth) else None
    walk = JobsOrderByQueues(ssn, [], depth, sorted_leaves=shared.leaves, runs=shared.runs, replay=replay)
    if replay is None:
        shared.walk = walk
    return walk


__all__ = ["pending_walk"]
