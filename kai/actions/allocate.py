"""allocate: place pending jobs, gang by gang, in queue-fair order.

For each job popped from JobsOrderByQueues: check the queue capacity for its gang chunk,
place the chunk with one kernel call per run of identical tasks, and commit only when
every PodSet reaches its minimum. A gang that needs releasing resources is pipelined as a
whole (nothing binds). Elastic jobs get one extra pod per turn and go back in the queue,
so extras interleave with other jobs. Failures are explained once, for that job only.
"""
from __future__ import annotations

import numpy as np
import structlog

from kai.framework.explain import explain_task
from kai.actions.common.job_order import JobsOrderByQueues
from kai.actions.common.lone_answers import lone_answers
from kai.actions.common.pending_index import capacity_checked, current_index
from kai.api import constants as C
from kai.framework.action import Action, cyclic_gc_paused, register_action
from kai.framework.statement import Statement

S = C.PodStatus
log = structlog.get_logger("kai.allocate")

#: single-pod jobs take ``_allocate_lone`` and capacity answers are shared per request in
#: ``schedulable_jobs``; False runs every job through the general walk (the reference the
#: tests and benchmarks compare the short paths with)
SHORT_PATHS = True
#: ``schedulable_jobs`` with capacity checked answers from the pending index (kept across
#: cycles; kai.actions.common.pending_index); False asks every pending job (the reference)
USE_INDEX = True


def schedulable_jobs(ssn, check_capacity: bool = True, jobs=None, preemptible_only: bool = False) -> list:
    """Jobs the allocate-like actions consider: queue usable and leaf, ready, with pending pods.
    ``jobs``: only these (default: the session's pending jobs), in their order.
    ``preemptible_only``: leave non-preemptible jobs out first, without a reason recorded
    (consolidation: KAI's FilterNonPreemptible).

    ``check_capacity=False`` (reclaim, preempt) keeps jobs their queue cannot take now: their
    victims' evictions may make room under the queue's limit (KAI judges capacity inside each
    victim scenario).

    A single-pod job's capacity answer depends only on its queue, its pod's request and DRA
    GPUs, and its preemptibility while nothing is allocated (``Session.capacity_by_request``),
    so it is asked once per such key and shared: a queue held back by its limit or quota costs
    one check per kind of pod in it, not one per job."""
    short = SHORT_PATHS
    share = check_capacity and ssn.capacity_by_request
    if share and short and jobs is None and USE_INDEX and (ssn.memory.pending_index is not None
                                                           or ssn.memory.cycles > 0):
        # the pending index's groups of single-pod jobs: one question a group, not a job
        # (built here from the second cycle on, when the backlog outlived a cycle)
        return capacity_checked(ssn, current_index(ssn, schedulable_jobs), schedulable_jobs, preemptible_only)
    if preemptible_only:
        jobs = [j for j in (jobs if jobs is not None else ssn.pending_jobs) if j.preemptible]
    out = []
    held: dict[tuple, list[str] | None] = {}  # capacity key -> the reasons (one list a key), or none
    queues = ssn.queues
    leaf: dict[str, bool] = {}               # queue name -> a usable leaf queue
    pending = S.PENDING
    for job in (jobs if jobs is not None else ssn.pending_jobs if short else ssn.jobs.values()):
        lone = job.lone_task() if short else None
        if lone is not None:
            if lone.status != pending:
                continue                      # no pending pod
            is_leaf = leaf.get(job.queue)
            if is_leaf is None:
                q = queues.get(job.queue)
                is_leaf = leaf[job.queue] = q is not None and q.is_leaf
            if is_leaf and not job.invalid_reasons:
                # ready: its one pod is pending (alive, not gated) and its minimum is <= 1
                if check_capacity:
                    key = (job.queue, job.preemptible, lone.req.tobytes(), lone.dra_gpus) \
                        if share and lone.gpu_sharing is None else None
                    over = held.get(key, False) if key is not None else False
                    if over is False:
                        over = ssn.is_job_over_capacity(job, [lone])
                        if over:
                            over = [over]     # the reasons, one list per key (read-only)
                        if key is not None:
                            held[key] = over
                    if over:
                        ssn.record_fit_error(job, over)
                        continue
                out.append(job)
                continue
        if not job.has_pending():
            continue
        if job.invalid_reasons:
            ssn.record_fit_error(job, list(dict.fromkeys(job.invalid_reasons)))
            continue
        q = ssn.queues.get(job.queue)
        if q is None:
            problem = ssn.queues.problems.get(job.queue)
            ssn.record_fit_error(job, [f"QueueDoesNotExist: queue {job.queue!r} "
                                       + (f"is unusable: {problem}" if problem else "does not exist")])
            continue
        if not q.is_leaf:
            ssn.record_fit_error(job, [f"queue {job.queue!r} is not a leaf queue; only leaf queues take jobs"])
            continue
        if not job.is_ready():
            short = []
            for ps in job.podsets.values():
                alive = sum(1 for t in ps.tasks if t.status & C.ALIVE and t.status != S.GATED)
                if alive < ps.min_available:
                    where = f"subgroup {ps.name!r}" if ps.name else "the PodGroup"
                    short.append(f"{where} has {alive} schedulable pod(s), fewer than its minMember "
                                 f"{ps.min_available} (pods not created yet or scheduling-gated)")
            ssn.record_fit_error(job, short)
            continue
        # A job its queue cannot take now (OverLimit, NonPreemptibleOverQuota) stays out of
        # the queue order: as a queue's head job it would misrepresent the queue (its large
        # request would push the queue back behind others) and cause allocate/reclaim
        # ping-pong. Within an action usage only grows, so it could not run later in it.
        over = check_capacity and ssn.is_job_over_capacity(
            job, ssn.job_chunk(job))
        if over:
            ssn.record_fit_error(job, [over])
            continue
        out.append(job)
    return out


def _runs(ssn, tasks):
    """Split tasks into runs of identical request and constraints (one kernel call each);
    a task whose predicates change with every placement is a run of its own."""
    runs = []
    keys = []
    reqs = []               # the request bytes of each run's first task
    for t in tasks:
        key = ssn.run_key(t) if t.constraints is not None or ssn.pod_counts is not None else ()
        req = t.req.tobytes()
        if runs and t.gpu_sharing is None and runs[-1][0].gpu_sharing is None \
                and not ssn.placed_one_at_a_time(t) \
                and t.signature == runs[-1][0].signature and req == reqs[-1] \
                and key == keys[-1]:
            runs[-1].append(t)
        else:
            runs.append([t])
            keys.append(key)
            reqs.append(req)
    return runs


def allocate_job(ssn, job, stmt: Statement, allow_pipeline: bool = True) -> tuple[bool, list[str]]:
    """Try to place the job's next chunk in ``stmt``; (success, reasons). Leaves ops on success.

    The chunk is placed by walking the job's SubGroup tree (KAI's SubGroupSet recursion):
    at each level ``ssn.subset_nodes`` splits the current node set into candidate sets
    (topology domains); each is tried under a checkpoint and rolled back on failure.
    Inner SubGroup sets go before PodSets; a PodSet's tasks are placed in runs.
    """
    lone = job.lone_task() if SHORT_PATHS else None
    if lone is not None and lone.gpu_sharing is None and lone.status == S.PENDING:
        got = _allocate_lone(ssn, job, lone, stmt, allow_pipeline)
        if got is not None:
            return got
    tasks = ssn.job_chunk(job)
    if not tasks:
        return False, []
    over = ssn.is_job_over_capacity(job, tasks)
    if over:
        return False, [over]
    cp = stmt.checkpoint()
    by_podset: dict[int, list] = {}
    for t in tasks:
        by_podset.setdefault(id(job.podset_of(t)), []).append(t)
    walk = _Walk(ssn, job, stmt, allow_pipeline, tasks, by_podset)
    ok, reasons = walk.subgroup(job.root_subgroup, None)
    if not ok:
        stmt.rollback(cp)
        return False, reasons
    if not job.is_gang_satisfied():
        stmt.rollback(cp)
        missing = sum(max(ps.min_available - ps.active_allocated, 0) for ps in job.podsets.values())
        return False, [f"gang needs {missing} more pod(s) than exist to reach minMember"]
    if any(t.status == S.PIPELINED for t in tasks):
        stmt.convert_to_pipelined(job.key)
    return True, []


def _allocate_lone(ssn, job, task, stmt: Statement, allow_pipeline: bool) -> tuple[bool, list[str]] | None:
    """``allocate_job`` for a single-pod job (``PodGroupInfo.lone_task``, whole GPUs or none):
    the same checks, in the same order, with the same reasons, without the SubGroup walk's
    bookkeeping. None when a SubsetNodes fn has an opinion on the job (the walk then runs).
    A job whose look-alike class got "nothing to add" from every hook earlier in the session
    takes the class's node mask without asking them (kai.actions.common.lone_answers)."""
    over = ssn.is_job_over_capacity(job, [task])
    if over:
        return False, [over]
    memo = lone_answers(ssn)
    ck = memo.class_key(job, task) if memo.usable else None
    kept = memo.get(ck) if ck is not None else None
    if kept is None and ssn.subset_nodes_fns:
        root = job.root_subgroup
        leaf = root.children[0]
        podsets = [leaf.podset]
        for sg in (root, leaf):
            for fn in ssn.subset_nodes_fns:
                if fn(job, sg, podsets, [task], None) is not None:
                    return None
    prev = ssn.node_set
    if prev is not None:
        ssn.node_set = None
    try:
        if kept is not None:
            mask, extra, dc, preds = kept.mask, None, None, ()
        else:
            preds = ssn.predicates_for(task)
            msg = ssn.pre_predicate(task, job, preds)
            if msg:
                return False, [msg]
            mask = ssn.node_mask(task, job, preds)
            extra = ssn.node_scores(task, job, mask) if ssn.node_order_fns else None
            dc = ssn.domain_constraints(task, job, preds)
            if ck is not None and not preds and extra is None and dc is None:
                kept = memo.keep(ck, mask)
        if not stmt.allocate_one(task, mask, extra, allow_pipeline, dc, preds, kept):
            return False, [f"pod {task.key}: " + explain_task(ssn, task, job, mask)]
    finally:
        if prev is not None:
            ssn.node_set = prev
    if task.status == S.PIPELINED:
        stmt.convert_to_pipelined(job.key)
    return True, []


class _Walk:
    """One job chunk's walk over its SubGroup tree (see ``allocate_job``)."""

    def __init__(self, ssn, job, stmt, allow_pipeline, tasks, by_podset) -> None:
        self.ssn, self.job, self.stmt, self.allow_pipeline = ssn, job, stmt, allow_pipeline
        self.tasks = tasks
        self.by_podset = by_podset
        self.first = {id(t): i for i, t in enumerate(tasks)}
        self.quiet = False      # True: failures are not explained (their reason is never shown)

    def _tasks_under(self, sg) -> list:
        out = []
        for ps in sg.podsets():
            out.extend(self.by_podset.get(id(ps), ()))
        return out

    def subgroup(self, sg, node_set) -> tuple[bool, list[str]]:
        """Place the chunk's tasks under ``sg`` inside ``node_set``; nothing is rolled back here
        on success, and on failure the caller rolls back to its checkpoint."""
        ssn, stmt = self.ssn, self.stmt
        tasks = self._tasks_under(sg)
        if not tasks:
            return True, []
        dropped: list[str] = []
        if ssn.subset_nodes_fns:
            sets = ssn.subset_nodes(self.job, sg, sg.podsets(), tasks, node_set, dropped)
        else:
            sets = [(node_set, "")]
        failures: list[tuple[str, list[str]]] = []
        quiet = self.quiet
        for mask, name in sets:
            cp = stmt.checkpoint()
            self.quiet = quiet or len(failures) >= 3      # only the shown failures are explained
            ok, why = self._children(sg, mask)
            self.quiet = quiet
            if ok:
                return True, []
            stmt.rollback(cp)
            failures.append((name, why))
        if not failures:
            return False, dropped or [f"no candidate nodes for {_who(sg)}"]
        if len(failures) == 1:
            name, why = failures[0]
            return False, [f"in {name}: {w}" for w in why] if name else why
        shown = "; ".join(f"{name or 'node set'}: {' / '.join(why)}" for name, why in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        return False, [f"none of {len(failures)} candidate node sets could place {_who(sg)}: {shown}{more}"]

    def _children(self, sg, node_set) -> tuple[bool, list[str]]:
        if sg.podset is not None:
            return self.place(self.by_podset.get(id(sg.podset), []), node_set)
        kids = [c for c in sg.children if self._tasks_under(c)]
        kids.sort(key=lambda c: (c.podset is not None, min(self.first[id(t)] for t in self._tasks_under(c))))
        for child in kids:
            ok, why = self.subgroup(child, node_set)
            if not ok:
                return False, why
        return True, []

    def place(self, tasks, node_set) -> tuple[bool, list[str]]:
        """Place tasks in runs of identical ones, restricted to ``node_set``."""
        ssn, stmt, job = self.ssn, self.stmt, self.job
        prev = ssn.node_set
        ssn.node_set = node_set
        try:
            for run in _runs(ssn, tasks):
                t0 = run[0]
                msg = ssn.pre_predicate(t0, job)
                if msg:
                    return False, [msg]
                if t0.gpu_sharing is not None:
                    alloc = ssn.shared_gpu_allocator
                    if alloc is None:
                        return False, [f"pod {t0.key} requests a GPU fraction but GPU sharing is not enabled"]
                    for t in run:
                        ok, why = alloc(ssn, stmt, t, job)
                        if not ok:
                            return False, [why]
                    continue
                mask = ssn.node_mask(t0, job)
                extra = ssn.node_scores(t0, job, mask)
                if extra is None and node_set is not None:
                    # a node set is a fresh mask: skip the lazy node queues (keyed per mask)
                    extra = np.zeros(mask.shape[0])
                dc = ssn.domain_constraints(t0, job)
                placed = stmt.allocate_run(run, mask, extra, self.allow_pipeline, dc)
                if placed < len(run):
                    failed = run[placed]
                    total = len(self.tasks)
                    done = sum(1 for t in self.tasks if t.status & (S.ALLOCATED | S.PIPELINED))
                    why = "not explained" if self.quiet else explain_task(ssn, failed, job, mask)
                    prefix = (f"gang of {total} pods: only {done} could be placed; pod {failed.key}: "
                              if total > 1 else f"pod {failed.key}: ")
                    return False, [prefix + why]
            return True, []
        finally:
            ssn.node_set = prev


def _who(sg) -> str:
    return f"subgroup {sg.name!r}" if sg.name else "the job"


@register_action
class Allocate(Action):
    name = "allocate"

    def execute(self, ssn) -> None:
        # The loop allocates small acyclic objects per job (ops, decisions), which reference
        # counting frees; the cyclic collector would only rescan the cluster state's millions
        # of long-lived objects, 5-10% of a cycle at 20,000 jobs (run_cycle pauses it too).
        with cyclic_gc_paused():
            self._execute(ssn)

    def _execute(self, ssn) -> None:
        depth = ssn.config.queue_depth_per_action.get(self.name)
        candidates = schedulable_jobs(ssn)
        nominated = ssn.state.nominated
        first = [j for j in candidates if j.key in nominated]
        if not first:
            self._run(ssn, candidates, depth)
            return
        # Jobs that reclaim/preempt/consolidation pipelined in an earlier cycle go first
        # (like kube-scheduler's nominated pods): the resources were freed for them, and if
        # the queue order handed them to someone else again, the next reclaim would take
        # them back -- allocate/evict ping-pong. Within each group, the usual queue order.
        self._run(ssn, first, depth)
        self._run(ssn, [j for j in candidates if j.key not in nominated], depth)

    def _run(self, ssn, candidates, depth) -> None:
        jobs = JobsOrderByQueues(ssn, candidates, depth)
        for job in jobs:
            stmt = Statement(ssn)
            lone = job.lone_task() if SHORT_PATHS else None
            if lone is not None and lone.status == S.PENDING and lone.gpu_sharing is None:
                got = _allocate_lone(ssn, job, lone, stmt, True)
                if got is not None:
                    if not got[0]:
                        stmt.discard()
                        ssn.record_fit_error(job, got[1])
                        continue
                    # its one pod was pending: nothing ran before, nothing is left to place
                    stmt.commit()
                    ssn.fit_errors.pop(job.key, None)
                    if lone.status & C.ALLOCATED:
                        job.last_start = ssn.now
                    continue
            ok, reasons = allocate_job(ssn, job, stmt)
            if not ok:
                stmt.discard()
                if reasons:
                    ssn.record_fit_error(job, reasons)
                continue
            was_running = job.count(C.ALLOCATED) - sum(1 for op in stmt.ops if op.kind == "allocate")
            stmt.commit()
            ssn.fit_errors.pop(job.key, None)
            if was_running == 0 and job.count(C.ALLOCATED) > 0:
                job.last_start = ssn.now
            if job.has_pending() and job.is_gang_satisfied() and \
                    not any(t.status == S.PIPELINED for t in job.tasks.values()):
                jobs.push(job)
