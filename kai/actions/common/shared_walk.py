"""The pending walk reclaim and preempt share within a session.

Both actions walk the same jobs (``schedulable_jobs(ssn, check_capacity=False)``) in the same
job order, and in a backlog held back by quota or limits the first of them usually changes
nothing. :func:`pending_walk` then hands the second one the first one's work: the candidate
list, each leaf's sorted entries and the look-alike runs found in them, all kept while the
session's ``alloc_events`` stand still. Every answer kept here is a function of the session's
jobs, and within a session jobs change only through Statement operations, each of which
fires an allocate/deallocate/pipeline event; a moved counter drops everything.
"""
from __future__ import annotations

from kai.actions.allocate import schedulable_jobs
from kai.actions.common.job_order import JobsOrderByQueues

_MEMO = "pending_walk"
#: False: every walk is built afresh (the reference the tests compare the shared walk with)
SHARE = True


class _Shared:
    """What one walk built, for the next one while ``events`` is the session's counter."""

    __slots__ = ("events", "jobs", "leaves", "runs")

    def __init__(self, events: int, jobs: list) -> None:
        self.events = events
        self.jobs = jobs
        #: leaf queue -> its sorted entries, as JobsOrderByQueues built them (never mutated)
        self.leaves: dict[str, list] | None = None
        #: (alike fn, leaf, position) -> the end of the look-alike run starting after it
        self.runs: dict[tuple, int] = {}


def pending_walk(ssn, depth: int | None) -> JobsOrderByQueues | None:
    """reclaim's and preempt's walk over the pending jobs (None when there are none): built
    afresh, or from the last one's candidates, sorted leaves and look-alike runs when no
    allocation event fired since it was built."""
    memo = ssn.action_memo
    shared = memo.get(_MEMO) if SHARE else None
    if shared is None or shared.events != ssn.alloc_events:
        shared = memo[_MEMO] = _Shared(ssn.alloc_events, schedulable_jobs(ssn, check_capacity=False))
    if not shared.jobs:
        return None
    order = JobsOrderByQueues(ssn, shared.jobs, depth, sorted_leaves=shared.leaves, runs=shared.runs)
    if shared.leaves is None:
        shared.leaves = order.sorted_leaves()
    return order


__all__ = ["pending_walk"]
