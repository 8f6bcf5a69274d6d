"""reclaim: take resources back from other queues for a pending job of a starved queue.

For each pending job (the same jobs allocate considers, in queue-fair order):

1. the gate ``ssn.can_reclaim_fns`` -- only the first registered fn is consulted (a
   single-answer hook, as in KAI); with none registered reclaim does nothing::

       can_reclaim(ssn, job: PodGroupInfo, tasks: list[PodInfo]) -> bool

   ``tasks`` is the job's next chunk (``tasks_to_allocate``);
2. victims are jobs of OTHER queues that are preemptible, have pods on nodes, and pass
   every ``reclaim_victim_filter_fns`` (``victim_filter(ssn, reclaimer, victim) -> bool``),
   taken in inverted queue order (the queue that orders last gives first) and inverted
   job order within a queue;
3. a job over its queue's (or an ancestor's) limit is kept: the limit is checked inside
   each scenario, after the victims' resources are released, so a reclaim that frees room
   under the limited ancestor goes through (skipped at once when no victim sits there);
4. the shared JobSolver searches the fewest victims; every
   ``reclaim_scenario_validator_fns`` must accept the scenario
   (``validator(ssn, reclaimer, victims: dict[job_key, list[PodInfo]]) -> bool``).

The proportion plugin registers the gate and the validator (kai.plugins.proportion_reclaim),
minruntime the victim filter and an elastic-minimum validator.
"""
from __future__ import annotations

import structlog

from kai.actions.common.lookalike import alike_for
from kai.actions.common.shared_walk import pending_walk
from kai.actions.common.minimal_job import MinimalJobRepresentatives
from kai.actions.common.solver import JobSolver
from kai.actions.common.victims import VictimCandidates, capacity_blocker, victims_can_relieve
from kai.actions.preempt import commit_solution
from kai.framework.action import Action, register_action

log = structlog.get_logger("kai.reclaim")


@register_action
class Reclaim(Action):
    name = "reclaim"

    def execute(self, ssn) -> None:
        if not ssn.can_reclaim_fns:
            return
        can_reclaim = ssn.can_reclaim_fns[0]
        order = pending_walk(ssn, ssn.config.queue_depth_per_action.get(self.name))
        if order is None:
            return
        cands = VictimCandidates.of(ssn)
        if not cands.jobs:
            return
        solver = JobSolver(ssn, self.name, ssn.reclaim_scenario_validator_fns)
        filters = ssn.reclaim_victim_filter_fns
        failed: dict[str, MinimalJobRepresentatives] = {}      # per queue, as KAI
        for job in order:
            if self._turn(ssn, job, can_reclaim, failed, cands, solver, filters):
                # the copies of a refused job get its answer: pass over them
                order.skip_alike(job, alike_for(ssn))

    def _turn(self, ssn, job, can_reclaim, failed, cands, solver, filters) -> bool:
        """One reclaimer's turn. True: nothing in the session moved and a look-alike job
        would be refused the same way (at the gate, as no easier than a failed job, or, with
        signatures on, by the signature check once this job failed). False: a reclaim was
        committed, or a copy would be tried again (signatures off, as KAI does)."""
        if not job.has_pending():
            return True
        tasks = job.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)
        if not tasks or not can_reclaim(ssn, job, tasks):
            return True
        reps = failed.setdefault(job.queue, MinimalJobRepresentatives())
        signatures = ssn.config.use_scheduling_signatures
        if signatures and (rep := reps.skip(job)) is not None:
            log.debug("reclaim skipped: no easier than a failed job", job=job.key, failed=rep.key)
            return True
        queues = [q for q in cands.jobs if q != job.queue]
        if not queues:
            return True
        # over a limit now: only victims under the limited queue can make room
        blocker = capacity_blocker(ssn, job, tasks)
        if blocker is not None and not victims_can_relieve(ssn, blocker, queues):
            return True

        def accept(v, job=job):
            return v.key != job.key and all(f(ssn, job, v) for f in filters)

        solution = solver.solve(job, cands.order(queues, accept))
        if solution is not None:
            commit_solution(ssn, job, solution, self.name)
            return False
        reps.failed(job)
        return signatures and reps.skip(job) is not None
