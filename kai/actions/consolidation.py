"""consolidation: move running preemptible pods so that a pending preemptible job fits.

KAI's consolidation action (``actions/consolidation``): defragmentation without losses. For
each pending job (the jobs allocate considers, in queue-fair order) that is **preemptible**:

1. precheck: the cluster's idle + releasing resources must cover the job's next chunk
   (KAI checks GPUs, ``IsEnoughGPUsAllocatableForJob``; every requested resource here) --
   moving pods never creates capacity, it only gathers it;
2. victims: preemptible jobs with pods on nodes, in any queue, other than the job itself,
   taken in KAI's victim order (inverted queue order, then inverted job order; gangs whole,
   elastic jobs one pod at a time), at most ``max_consolidation_preemptees`` distinct jobs
   (``--max-consolidation-preemptees``, default 16; 0 disables the action, a negative value
   lifts the cap);
3. the shared JobSolver in move mode with ``all_moved``: a scenario evicts the first *k*
   victim chunks, places the job, then places every victim's pods again (pipeline only);
   it is accepted only if the job is placed **and** every victim pod was re-placed
   (KAI's ``allPodsReallocated``), so nothing is evicted for good. The smallest *k* wins
   (fewest moves).

On success the statement is committed: each moved pod is evicted (action
``consolidation``) from its old node and pipelined on its new one, and the job is
pipelined (or bound where it fits on idle resources). A pod placed back on its own node is
kept running. Otherwise everything is discarded. The Scheduler drops this action when a
placement strategy is ``spread`` (as KAI does).
"""
from __future__ import annotations

import numpy as np
import structlog

from kai.actions.allocate import schedulable_jobs
from kai.actions.common.job_order import JobsOrderByQueues
from kai.actions.common.minimal_job import MinimalJobRepresentatives
from kai.actions.common.solver import JobSolver
from kai.actions.common.victims import VictimCandidates
from kai.actions.preempt import commit_solution
from kai.api.resources import GPU
from kai.framework.action import Action, register_action

log = structlog.get_logger("kai.consolidation")

_EPS = 1e-9


def max_consolidation_preemptees(config) -> int:
    """``--max-consolidation-preemptees`` from the scheduler config (default 16)."""
    return int(config.max_consolidation_preemptees)


def enough_capacity(ssn, tasks) -> bool:
    """The cluster's idle + releasing totals cover the tasks' total request.

    GPUs are counted as KAI's ``IsEnoughGPUsAllocatableForJob`` counts them: whole idle or
    releasing devices plus the free and releasing portions of shared devices, against whole
    GPUs + fractions x devices; gpu-memory requests against the same capacity in MiB (each
    node's device memory)."""
    width = ssn.allocatable.shape[0]
    need = np.zeros(width)
    need_mem = 0.0
    for t in tasks:
        need += t.req_vec(width)
        gs = t.gpu_sharing
        if gs is not None:
            if gs.portion:
                need[GPU] += gs.portion * gs.num_devices
            elif gs.memory_mib:
                need_mem += gs.memory_mib * gs.num_devices
    cols = np.flatnonzero(need > 0)
    if cols.size == 0 and not need_mem:
        return True
    have = np.maximum(ssn.avail[cols], 0).sum(axis=1)
    short = have + _EPS < need[cols]
    gpu_at = np.flatnonzero(cols == GPU)
    if need_mem or (gpu_at.size and short[gpu_at[0]]):
        # whole devices do not cover it: add the shared devices' free and releasing portions
        per_node = np.maximum(ssn.avail[GPU], 0)
        if ssn.dev_used.shape[1]:
            group = ssn.dev_used > _EPS
            per_node = per_node + np.where(group, np.maximum(1.0 - ssn.dev_used, 0.0)
                                           + np.maximum(ssn.dev_rel, 0.0), 0.0).sum(axis=1)
        if gpu_at.size:
            short[gpu_at[0]] = per_node.sum() + _EPS < need[GPU]
        if need_mem and need_mem > float((per_node * ssn.state.nodes.gpu_memory).sum()) + _EPS:
            return False
    return not bool(short.any())


@register_action
class Consolidation(Action):
    name = "consolidation"

    def execute(self, ssn) -> None:
        cap = max_consolidation_preemptees(ssn.config)
        if cap == 0:
            return
        # non-preemptible jobs are left out first, as KAI's job order does for consolidation
        # (FilterNonPreemptible): their capacity is not asked again, their reasons stay allocate's
        pending = schedulable_jobs(ssn, preemptible_only=True)
        if not pending:
            return
        cands = VictimCandidates.of(ssn)
        if not cands.jobs:
            return
        solver = JobSolver(ssn, self.name, [], move=True, all_moved=True)
        queues = list(cands.jobs)
        failed = MinimalJobRepresentatives() if ssn.config.use_scheduling_signatures else None
        for job in JobsOrderByQueues(ssn, pending, ssn.config.queue_depth_per_action.get(self.name)):
            if not job.has_pending():
                continue
            if failed is not None and (rep := failed.skip(job)) is not None:
                log.debug("consolidation skipped: no easier than a failed job", job=job.key, failed=rep.key)
                continue
            tasks = job.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)
            if not tasks:
                continue
            if not enough_capacity(ssn, tasks):
                if failed is not None:
                    failed.failed(job)
                continue

            def accept(v, job=job):
                return v.key != job.key

            solution = solver.solve(job, cands.order(queues, accept), max_victim_jobs=cap)
            if solution is None:
                if failed is not None:
                    failed.failed(job)
                continue
            log.info("consolidation moves", job=job.key, moved_pods=solution.n_moved_pods)
            commit_solution(ssn, job, solution, self.name)
