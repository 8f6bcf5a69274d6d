"""preempt: within a queue, evict lower-priority preemptible jobs for a pending job.

For each pending job (the same jobs allocate considers, in queue-fair order), victims are
jobs of the SAME queue that are preemptible, of strictly lower priority, with pods on
nodes, other than the preemptor, and accepted by every ``preempt_victim_filter_fns``::

    victim_filter(ssn, preemptor: PodGroupInfo, victim: PodGroupInfo) -> bool

They are taken lowest priority, newest first (gangs whole, elastic victims one pod at a
time down to minMember) by the shared JobSolver, and scenarios must pass every
``preempt_scenario_validator_fns`` (see kai.actions.common.solver). A non-preemptible
preemptor that would push its queue's non-preemptible usage over quota is skipped first
(KAI's IsNonPreemptibleJobOverQueueQuota). A preemptor over its queue's *limit* is not:
its victims are in its own queue, and the limit is checked in each scenario, after their
resources are released (KAI's priority example: queue quota 1 / limit 1 GPU, a running
train job, a build job submitted -> build preempts train).
The first scenario in which the preemptor's gang fits is committed: evictions, and the
preemptor pipelined -- as in KAI, where the solver places the preemptor pipeline-only, even
on idle resources; the next cycle's allocate binds it once its victims are gone.
As in KAI's shared solver, a victim that can be placed again elsewhere is moved (evicted
and pipelined on another node) rather than lost, unless ``--allow-consolidating-reclaim``
is false.
"""
from __future__ import annotations

import structlog

from kai.actions.common.lookalike import alike_for
from kai.actions.common.shared_walk import pending_walk
from kai.actions.common.minimal_job import MinimalJobRepresentatives
from kai.actions.common.solver import JobSolver
from kai.actions.common.victims import (VictimCandidates, capacity_blocker, nonpreemptible_over_quota,
                                        victims_can_relieve)
from kai.api import constants as C
from kai.framework.action import Action, register_action

log = structlog.get_logger("kai.preempt")


def commit_solution(ssn, job, solution, action: str) -> None:
    """Commit a solver's statement; record the start time like allocate does."""
    was_running = job.count(C.ALLOCATED) - sum(1 for op in solution.stmt.ops if op.kind == "allocate")
    solution.stmt.commit()
    ssn.fit_errors.pop(job.key, None)
    if was_running == 0 and job.count(C.ALLOCATED) > 0:
        job.last_start = ssn.now
    log.info(f"{action} solved", job=job.key, victims=sorted(solution.victims),
             victim_pods=solution.n_victim_pods)


@register_action
class Preempt(Action):
    name = "preempt"

    def execute(self, ssn) -> None:
        order = pending_walk(ssn, ssn.config.queue_depth_per_action.get(self.name))
        if order is None:
            return
        cands = VictimCandidates.of(ssn)
        solver = JobSolver(ssn, self.name, ssn.preempt_scenario_validator_fns)
        filters = ssn.preempt_victim_filter_fns
        failed: dict[str, MinimalJobRepresentatives] = {}      # per queue, as KAI
        for job in order:
            if self._turn(ssn, job, failed, cands, solver, filters):
                # the copies of a refused job get its answer: pass over them
                order.skip_alike(job, alike_for(ssn))

    def _turn(self, ssn, job, failed, cands, solver, filters) -> bool:
        """One preemptor's turn. True: nothing in the session moved and a look-alike job
        would be refused the same way; False: a preemption was committed, or a copy would be
        tried again (signatures off, as KAI does)."""
        if job.queue not in cands.jobs or not job.has_pending():
            return True
        reps = failed.setdefault(job.queue, MinimalJobRepresentatives())
        signatures = ssn.config.use_scheduling_signatures
        if signatures and (rep := reps.skip(job)) is not None:
            log.debug("preempt skipped: no easier than a failed job", job=job.key, failed=rep.key)
            return True
        tasks = job.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)
        if not tasks or nonpreemptible_over_quota(ssn, job, tasks):
            return True
        def accept(v, job=job):
            return (v.key != job.key and v.priority < job.priority
                    and all(f(ssn, job, v) for f in filters))

        blocker = capacity_blocker(ssn, job, tasks)
        # over a limit now: only victims evicted under the limited queue make room, and the
        # only victims here are this queue's own; with none the solver may take, no scenario
        # can place the job
        if blocker is not None and (not victims_can_relieve(ssn, blocker, [job.queue])
                                    or not any(accept(v) for v in cands.jobs.get(job.queue, ()))):
            return True

        solution = solver.solve(job, cands.order([job.queue], accept))
        if solution is not None:
            commit_solution(ssn, job, solution, self.name)
            return False
        reps.failed(job)
        return signatures and reps.skip(job) is not None
