"""stalegangeviction: evict gangs that have been running below their minimum for too long.

A job is *stale* when it has at least one active-used pod, no Succeeded pod, and some
PodSet whose active-used count is below its ``minAvailable`` (a gang that lost members).
The staleness start comes from the PodGroup annotation ``kai.scheduler/stale-podgroup-timestamp``
(``job.stale_since``); when unset, it is recorded as the session's ``now``. Once the job
has been stale for the grace period, every active allocated pod of the job is evicted.
A job that is no longer stale has its timestamp cleared.

KAI evicts with ``ssn.Evict`` directly; kai goes through a Statement (committed at once),
so the node arrays and the queue accounting stay consistent for later actions.

Only jobs that can be stale are looked at (``StaleWatch``): those stale or timestamped when
last seen, those the cluster state reports changed since, and those the previous and the
current session changed -- a job that was not stale can only become so when its pods change.
The others would be no-ops (not stale, no timestamp to clear), so a cluster of a million
running pods costs what changed.

Grace period (seconds; negative = never evict), first found wins: the PodGroup's
``spec.stalenessGracePeriod`` (newer KAI), ``config.default_staleness_grace_period``
(the ``--default-staleness-grace-period`` flag, 60 by default).
"""
from __future__ import annotations

import weakref

import structlog

from kai.api import constants as C
from kai.api.queue_info import parse_duration
from kai.framework.action import Action, register_action
from kai.framework.statement import Statement

S = C.PodStatus
log = structlog.get_logger("kai.stalegangeviction")

ACTION_NAME = "stalegangeviction"


def staleness_grace_period(ssn, job=None) -> float:
    """Per-job ``spec.stalenessGracePeriod`` first, then the scheduler's
    ``--default-staleness-grace-period`` (60 s by default; negative: never evict)."""
    if job is not None and job.podgroup is not None:
        own = job.podgroup.spec.staleness_grace_period
        if own:
            neg = own.startswith("-")
            secs = parse_duration(own.lstrip("-"))
            if secs is not None:
                return -secs if neg else secs
    return float(ssn.config.default_staleness_grace_period)


def is_stale(job) -> bool:
    """>= 1 active-used pod, no Succeeded pod, and some PodSet active-used < minAvailable."""
    used = False
    for t in job.tasks.values():
        if t.status == S.SUCCEEDED:
            return False
        if t.status & C.ACTIVE_USED:
            used = True
    if not used:
        return False
    return any(ps.count(C.ACTIVE_USED) < ps.min_available for ps in job.podsets.values())


class StaleWatch:
    """The jobs to look at next time (kept in the Scheduler's CycleMemory)."""

    def __init__(self, state) -> None:
        # the state itself, weakly: an id could be a later state's at the same address
        self.state_ref = weakref.ref(state)
        self.epoch = getattr(state, "job_seq_epoch", 0)
        self.seq = 0
        self.keys: set[str] = set()
        #: the previous session's ``touched_jobs`` (the set itself: actions after this one
        #: keep adding to it until that session closes)
        self.touched: set[str] = set()

    def valid_for(self, state) -> bool:
        return self.state_ref() is state and self.epoch == getattr(state, "job_seq_epoch", 0)


def _jobs_to_check(ssn) -> list:
    """The jobs that may be stale or carry a timestamp to clear, in ``jobs`` order."""
    state = ssn.state
    watch = ssn.memory.stale_watch
    if not hasattr(state, "changed_since"):
        return list(ssn.jobs.values())
    if watch is None or not watch.valid_for(state):
        ssn.memory.stale_watch = StaleWatch(state)
        return list(ssn.jobs.values())
    keys = watch.keys | watch.touched | ssn.touched_jobs
    keys.update(state.changed_since(watch.seq))
    found = []
    for key in keys:
        job = ssn.jobs.get(key)
        if job is not None:
            found.append((state.job_position(key), job))
    found.sort(key=lambda e: e[0])
    return [job for _, job in found]


def warm_watch(ssn) -> None:
    """Fill the watch the way a first pass would leave it, without acting (``Scheduler.warm``):
    when there is no valid watch, the jobs stale or timestamped now. Every other job would be
    a no-op in the first pass (not stale, nothing to clear), and it can only become stale
    through a change, which the next pass sees (``changed_since``)."""
    state = ssn.state
    watch = ssn.memory.stale_watch
    if not hasattr(state, "changed_since") or (watch is not None and watch.valid_for(state)):
        return
    watch = ssn.memory.stale_watch = StaleWatch(state)
    watch.keys = {job.key for job in ssn.jobs.values() if job.stale_since or is_stale(job)}
    watch.seq = state.change_seq


@register_action
class StaleGangEviction(Action):
    name = ACTION_NAME

    def execute(self, ssn) -> None:
        jobs = _jobs_to_check(ssn)
        self._execute(ssn, jobs)
        watch = ssn.memory.stale_watch
        if watch is not None:
            # next time: jobs still stale or timestamped, and every job this session changes,
            # before or after this action (evictions, pipelined pods going back to Pending)
            watch.keys = {j.key for j in jobs if j.stale_since}
            watch.touched = ssn.touched_jobs
            watch.seq = ssn.state.change_seq

    def _execute(self, ssn, jobs) -> None:
        for job in jobs:
            if not is_stale(job):
                job.stale_since = 0.0
                continue
            if not job.stale_since:
                job.stale_since = ssn.now
            grace = staleness_grace_period(ssn, job)
            if grace < 0 or ssn.now - job.stale_since < grace:
                continue
            # pipelined pods are not on their node yet (they go back to Pending at close)
            victims = [t for t in job.tasks.values() if t.status & C.ALLOCATED and t.node_name]
            if not victims:
                continue
            stmt = Statement(ssn)
            for t in victims:
                stmt.evict(t, ACTION_NAME)
            stmt.commit()
            log.info("stale gang evicted", job=job.key, pods=len(victims),
                     stale_for=round(ssn.now - job.stale_since, 3), min_member=job.min_member)
