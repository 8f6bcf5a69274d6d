"""One scheduling cycle: open a session over the cluster state, run the actions, close.

The same code runs in the live controller (``kai scheduler``) and in ``kai simulate``; they
differ only in the ``cache`` that receives the decisions (API calls vs. a recording).
"""
from __future__ import annotations

import contextlib
import time

import structlog

import kai.actions  # noqa: F401  (registers actions)
from kai.api import constants as C
from kai.cache.cluster_state import ClusterState
from kai.cache.decisions import CycleResult, Decision, RecordingCache
from kai.config import SchedulerConfig
from kai.framework.action import ACTIONS, cyclic_gc_paused
from kai.framework.session import CycleMemory, Session
from kai.plugins import build_plugins

log = structlog.get_logger("kai.scheduler")


class Scheduler:
    """Runs cycles of the configured actions over a ClusterState."""

    def __init__(self, state: ClusterState, config: SchedulerConfig) -> None:
        self.state = state
        self.config = config
        self.memory = CycleMemory()
        actions = list(config.actions)
        if "consolidation" in actions and "spread" in config.placement.values():
            actions.remove("consolidation")       # as KAI: spread disables consolidation
        self.actions = []
        self.skipped_actions = []
        for name in actions:
            cls = ACTIONS.get(name)
            if cls is None:
                self.skipped_actions.append(name)
            else:
                self.actions.append(cls())

    def open_session(self, cache, now: float | None = None, is_warm: bool = False) -> Session:
        ssn = Session(self.state, cache, self.config, now, self.memory, is_warm)
        ssn.plugins = build_plugins(self.config)
        for p in ssn.plugins:
            p.on_session_open(ssn)
        return ssn

    #: actions that read the kept pending index (allocate's and consolidation's capacity pass,
    #: reclaim's and preempt's walk) and the kept victim index
    PENDING_INDEX_USERS = frozenset({"allocate", "consolidation", "reclaim", "preempt"})
    VICTIM_INDEX_USERS = frozenset({"consolidation", "reclaim", "preempt"})

    def warm(self, now: float | None = None) -> float:
        """Bring what this Scheduler keeps from one session to the next up to date with the
        cluster state, deciding nothing; return the seconds it took.

        A session is opened (the plugins bring their kept per-job figures up to date, e.g.
        proportion's JobFigures), the kept indexes the configured actions read are brought up
        to date (pending and victim candidates, with the job order keys they hold, and the
        look-alike runs reclaim's and preempt's walks pass over), and the session is closed;
        no action runs, nothing is committed, and what counts cycles (FGD's decayed workload
        history) does not count it. So the next cycle pays only for the jobs changed since,
        as a cycle after another does. The controller calls it
        after its first sync, before it leads, and on a standby replica as the state changes:
        the first cycle a replica leads then costs what a steady cycle costs.

        A cycle decides the same with or without a warm before it: what is kept is a function
        of the jobs it covers, brought up to date the same way from any earlier session."""
        from kai.actions import allocate as allocate_mod
        from kai.actions.common import victims as victims_mod
        from kai.actions.common.lookalike import alike_for
        from kai.actions.common.pending_index import current_index, fill_runs
        from kai.actions.stale_gang_eviction import warm_watch

        names = {a.name for a in self.actions}
        start = time.perf_counter()
        with cyclic_gc_paused():
            ssn = self.open_session(RecordingCache(self.state), now, is_warm=True)
            try:
                if names & self.PENDING_INDEX_USERS:
                    idx = current_index(ssn, allocate_mod.schedulable_jobs)
                    if names & {"reclaim", "preempt"}:
                        fill_runs(idx, alike_for(ssn))       # the copies their walks pass over
                if names & self.VICTIM_INDEX_USERS and victims_mod.USE_INDEX:
                    victims_mod.VictimIndex.current(ssn)
                if "stalegangeviction" in names:
                    warm_watch(ssn)
            finally:
                ssn.close()
        return time.perf_counter() - start

    def run_cycle(self, cache=None, now: float | None = None) -> CycleResult:
        """Open a session, run the actions in order, close it. ``cache`` receives the commits
        (a RecordingCache when None) and carries the :class:`CycleResult`, which also gets the
        cycle's timings and, on each decision, the action that made it. The cyclic garbage
        collector is paused meanwhile (``cyclic_gc_paused``)."""
        with cyclic_gc_paused():
            try:
                return self._run_cycle(cache, now)
            finally:
                self.memory.cycles += 1

    def _run_cycle(self, cache, now: float | None) -> CycleResult:
        start = time.perf_counter()
        cache = cache or RecordingCache(self.state)
        result: CycleResult = cache.result
        ssn = self.open_session(cache, now)
        result.open_seconds = time.perf_counter() - start
        assuming = getattr(self.state, "assuming", None) or contextlib.nullcontext
        try:
            for action in self.actions:
                n_bound, n_piped, n_evicted = len(result.bindings), len(result.pipelined), len(result.evictions)
                t = time.perf_counter()
                # the action's bindings filed into the state together, unless the session
                # counts pods per domain (kai.framework.pod_counts reads the pod table's rows)
                with assuming() if ssn.pod_counts is None else contextlib.nullcontext():
                    action.execute(ssn)
                result.action_seconds[action.name] = time.perf_counter() - t
                for d in (*result.bindings[n_bound:], *result.pipelined[n_piped:], *result.evictions[n_evicted:]):
                    d.action = d.action or action.name
            # a fit error is recorded only for a job with a pending pod (allocate's candidates),
            # and only a job this session touched can have lost it since
            unschedulable = result.unschedulable
            unschedulable.update(ssn.fit_errors)
            for key in ssn.touched_jobs:
                if key in unschedulable:
                    job = ssn.jobs.get(key)
                    if job is None or not job.has_pending():
                        del unschedulable[key]
            result.queues = queue_report(ssn)
            result.queue_usage = queue_usage(ssn)
            result.queue_problems = dict(ssn.queues.problems)
            self._nominate(ssn)
        finally:
            t = time.perf_counter()
            ssn.close()
            result.close_seconds = time.perf_counter() - t
        result.duration = time.perf_counter() - start
        log.info("cycle", bindings=len(result.bindings), evictions=len(result.evictions),
                 pipelined=len(result.pipelined), unschedulable=len(result.unschedulable),
                 seconds=round(result.duration, 4))
        return result

    NOMINATION_TTL = 30.0   # seconds a pipelined job keeps its turn at the front of allocate

    def _nominate(self, ssn) -> None:
        """Remember jobs pipelined this cycle; forget those placed, gone or expired."""
        nominated = self.state.nominated
        for task, _status, _node in ssn.pipelined:
            if task.job_key:
                nominated.setdefault(task.job_key, ssn.now)
        for key, since in list(nominated.items()):
            job = self.state.jobs.get(key)
            pipelined_now = any(t.status == C.PodStatus.PIPELINED for t in job.tasks.values()) if job else False
            if job is None or ssn.now - since > self.NOMINATION_TTL or \
                    (not pipelined_now and not job.has_pending()):
                del nominated[key]
            elif not pipelined_now and job.is_gang_satisfied():
                del nominated[key]


def queue_report(ssn) -> list[dict]:
    """Per queue: fair share and allocation (gpu devices, cpu millicores, memory bytes)."""
    shares = ssn.shares
    allocated = shares.allocated if shares is not None else {}
    fair = shares.fair_share if shares is not None else {}
    out = []
    for q in ssn.queues.topological():
        a = allocated.get(q.name)
        f = fair.get(q.name)
        out.append({
            "name": q.name,
            "parent": q.parent or None,
            "fairShare": _triple(f),
            "allocated": _triple(a),
        })
    return out


def queue_usage(ssn) -> dict[str, dict[str, tuple]]:
    """Per queue, the proportion plugin's vectors as plain tuples (safe to use after close)."""
    sh = ssn.shares
    got = {"allocated": sh.allocated, "allocatedNonPreemptible": sh.allocated_nonpreemptible,
           "requested": sh.request, "deserved": sh.deserved} if sh is not None else {
        k: {} for k in ("allocated", "allocatedNonPreemptible", "requested", "deserved")}
    out: dict[str, dict[str, tuple]] = {}
    zero = (0.0, 0.0, 0.0)
    for q in ssn.queues.topological():
        name = q.name
        out[name] = {k: tuple(v[name].tolist()) if name in v else zero for k, v in got.items()}
    return out


def _triple(v) -> dict:
    if v is None:
        return {"gpu": 0, "cpu": 0, "memory": 0}
    gpu, cpu, mem = v.tolist() if hasattr(v, "tolist") else (float(x) for x in v)
    return {"gpu": int(gpu) if gpu.is_integer() else round(gpu, 6), "cpu": int(round(cpu)), "memory": int(round(mem))}


__all__ = ["Scheduler", "CycleResult", "Decision", "RecordingCache", "C"]
