"""JobSolver: find the fewest victims that let a pending job's next chunk fit (reclaim, preempt).

Scenarios are built as KAI's PodAccumulatedScenarioBuilder does: scenario *k* holds the
first *k* victim chunks popped from a ``VictimsOrderByQueues``. They are simulated in one
Statement that only grows: chunk *k* is evicted virtually on top of the earlier ones (its
pods' resources become *releasing* on their nodes), and the preemptor's chunk is then
placed with ``allocate_job`` -- which may pipeline onto releasing resources -- and rolled
back on failure. The preemptor's placement is always pipelined (KAI's solver allocates it
pipeline-only, even where the resources are idle): nothing binds in reclaim, preempt or
consolidation, the next cycle's allocate binds it. Nothing else in the cluster is re-simulated: a scenario changes only the
nodes its victims sit on, and the placement kernel reads those columns directly.

Cost control, in order:

- a *capacity bound*: no placement is tried until the cluster's idle + releasing totals
  cover the chunk's total request (KAI's idle-GPU scenario filter);
- the first ``SEQUENTIAL_TRIES`` scenarios after that are tried one by one; then the
  victim count grows geometrically, and once a scenario succeeds a binary search over the
  skipped range (rolling back to, or re-evicting up to, the chunk checkpoints) finds the
  smallest successful prefix. This assumes that more victims never hurt, which holds for
  these scenarios up to the greedy placement's tie-breaks;
- *pruning*: victims on nodes where the preemptor placed nothing are given back (their
  whole gang must sit on unused nodes), and the smaller scenario is re-checked.

Scenario validators (``reclaim_scenario_validator_fns`` / ``preempt_scenario_validator_fns``)
must all accept a scenario. Signature, as registered on the Session::

    validator(ssn, preemptor: PodGroupInfo, victims: dict[str, list[PodInfo]]) -> bool

with ``victims`` mapping victim job key -> the pods the scenario evicts from that job (the
Session's queue accounting already reflects the virtual evictions when it is called). When
the latest chunk alone makes a sequential scenario invalid, that chunk is given back and its
job is not taken from again (KAI keeps it and fails every later scenario).

*Move* mode (``move=True``; consolidation, and reclaim / preempt unless
``--allow-consolidating-reclaim=false``)
is KAI's victim re-placement (``TryToVirtuallyAllocatePreemptorAndGetVictims``): after the
preemptor is placed, every victim job, in job order, tries to place its evicted pods again
-- pipeline only, anywhere, its own old node included -- and a victim that fits is *moved*
(evicted from its old node, pipelined on its new one; back on its old node it is simply
kept, see ``Statement.commit``). Only the victims left Releasing are *lost*: they are what
the validators see (with the Session's accounting holding the lost evictions but not yet
the preemptor), and ``all_moved=True`` (consolidation's ``allPodsReallocated``) rejects any
scenario that loses one. The capacity bound still looks at the preemptor alone.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from kai.actions.allocate import _Walk, allocate_job
from kai.actions.common.victims import VictimsOrderByQueues
from kai.api import constants as C
from kai.api.podgroup_info import PodGroupInfo
from kai.api.resources import GPU
from kai.framework.statement import EVICT, Statement

SEQUENTIAL_TRIES = 4
_EPS = 1e-9


class Solution:
    """A committed-ready Statement plus its victims: ``victims`` maps job key -> the pods it
    evicts (lost and moved ones), ``moved`` the subset placed again on another node."""

    def __init__(self, stmt: Statement, victims: dict[str, list], moved: dict[str, list] | None = None) -> None:
        self.stmt = stmt
        self.victims = victims
        self.moved = moved or {}

    @property
    def n_victim_pods(self) -> int:
        return sum(len(v) for v in self.victims.values())

    @property
    def n_moved_pods(self) -> int:
        return sum(len(v) for v in self.moved.values())


def allow_consolidating_reclaim(config) -> bool:
    """KAI's ``--allow-consolidating-reclaim`` (default true): reclaim may move its victims."""
    return bool(config.allow_consolidating_reclaim)


def victim_chunk(ssn, job: PodGroupInfo, evicted: list) -> list:
    """The evicted pods a victim gets back in one try (KAI re-places a victim with one
    AllocateJob, i.e. its GetTasksToAllocate chunk): the gang chunk of every PodSet below its
    minimum, else one pod of the first PodSet (in PodSet order) that has one."""
    by_ps: dict[int, list] = {}
    for t in evicted:
        by_ps.setdefault(id(job.podset_of(t)), []).append(t)
    podsets = sorted(job.podsets.values(), key=ssn.podset_order_key or (
        lambda p: (p.gang_satisfied, p.active_allocated / max(p.min_available, 1), p.name)))
    chunk: list = []
    short = False
    for ps in podsets:
        need = ps.min_available - ps.active_allocated
        if need > 0:
            short = True
            chunk.extend(sorted(by_ps.get(id(ps), ()), key=ssn.task_order_key)[:need])
    if short:
        return chunk
    for ps in podsets:
        mine = by_ps.get(id(ps))
        if mine:
            return [min(mine, key=ssn.task_order_key)]
    return []


def put_back(ssn, job: PodGroupInfo, stmt: Statement, tasks: list) -> bool:
    """Return a victim's evicted pods to the nodes they were evicted from (an un-evict at
    commit); ops left in stmt on success."""
    width = ssn.state.nodes.n
    mask = np.zeros(width, dtype=np.uint8)
    for t in tasks:
        info = ssn.state.nodes.by_name.get(t.node_name)
        if info is None:
            return False
        mask[info.idx] = 1
    cp = stmt.checkpoint()
    tasks = sorted(tasks, key=ssn.task_order_key)
    by_podset: dict[int, list] = {}
    for t in tasks:
        by_podset.setdefault(id(job.podset_of(t)), []).append(t)
    homes = {id(t): t.node_name for t in tasks}
    ok, _ = _Walk(ssn, job, stmt, True, tasks, by_podset).subgroup(job.root_subgroup, mask)
    if not ok or any(t.node_name != homes[id(t)] or t.status == C.PodStatus.RELEASING for t in tasks):
        stmt.rollback(cp)
        return False
    stmt.convert_to_pipelined(job.key)
    return True


def place_again(ssn, job: PodGroupInfo, stmt: Statement, tasks: list) -> bool:
    """Place a victim's evicted (Releasing) pods again, pipeline only; ops left in stmt on success.

    All or nothing: the pods go back together (a gang's pods were evicted together) through
    the allocate walk, so topology node sets and GPU sharing apply as for any placement.
    """
    if not tasks:
        return True
    # Its queue's usage dropped when the pods were evicted and may have been taken since (by
    # the preemptor, or another victim of the same queue): coming back must respect the
    # queue's limit and non-preemptible quota like any allocation.
    if ssn.is_job_over_capacity(job, tasks):
        return False
    cp = stmt.checkpoint()
    tasks = sorted(tasks, key=ssn.task_order_key)
    by_podset: dict[int, list] = {}
    for t in tasks:
        by_podset.setdefault(id(job.podset_of(t)), []).append(t)
    ok, _ = _Walk(ssn, job, stmt, True, tasks, by_podset).subgroup(job.root_subgroup, None)
    if not ok or any(t.status == C.PodStatus.RELEASING for t in tasks):
        stmt.rollback(cp)
        return False
    stmt.convert_to_pipelined(job.key, since=cp)     # its pods were evicted, not placed, before cp
    return True


class JobSolver:
    """Victim search for one action. ``move``: re-place victims (see the module docstring);
    ``all_moved``: accept only scenarios where every victim was re-placed."""

    def __init__(self, ssn, action: str, validators: list[Callable], move: bool | None = None,
                 all_moved: bool = False) -> None:
        self.ssn = ssn
        self.action = action
        self.validators = validators
        if move is None:
            # KAI's byPodSolver re-places the victims of reclaim and preempt alike; the flag
            # --allow-consolidating-reclaim (default true) switches it off here
            move = action in ("reclaim", "preempt") and allow_consolidating_reclaim(ssn.config)
        self.move = move or all_moved
        self.all_moved = all_moved
        self.attempts = 0

    # ------------------------------------------------------------------ helpers
    def _valid(self, job: PodGroupInfo, chunks: list) -> bool:
        if not self.validators:
            return True
        victims: dict[str, list] = {}
        for vjob, tasks in chunks:
            victims.setdefault(vjob.key, []).extend(tasks)
        return all(fn(self.ssn, job, victims) for fn in self.validators)

    def _try(self, job: PodGroupInfo, stmt: Statement, chunks: list) -> str:
        """'ok' (preemptor placed, ops left in stmt), 'invalid' or 'nofit' (stmt unchanged)."""
        if self.move:
            return self._try_move(job, stmt, chunks)
        if not self._valid(job, chunks):
            return "invalid"
        self.attempts += 1
        cp = stmt.checkpoint()
        ok, _ = allocate_job(self.ssn, job, stmt)
        if ok and job.is_gang_satisfied():
            stmt.convert_to_pipelined(job.key)
            return "ok"
        stmt.rollback(cp)
        return "nofit"

    def _try_move(self, job: PodGroupInfo, stmt: Statement, chunks: list) -> str:
        """Place the preemptor and re-place the victims (``_placement_order``); validate on the
        lost victims only."""
        ssn = self.ssn
        self.attempts += 1
        cp = stmt.checkpoint()
        by_job: dict[str, tuple] = {}
        for vjob, tasks in chunks:
            by_job.setdefault(vjob.key, (vjob, []))[1].extend(tasks)
        lost: dict[str, list] = {}
        placed: list = []
        have = None                       # cluster idle + releasing totals, recomputed after a move
        width = ssn.allocatable.shape[0]
        if len(by_job) > 1 and len(job.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)) == 1:
            # KAI simulates a scenario node by node of its latest victim: only the victims
            # with a pod on those nodes (and those recorded for the preemptor's earlier
            # pods -- none for a one-pod chunk) are evicted; the others stay where they run
            latest = chunks[-1][0].key
            nodes = {t.node_name for t in by_job[latest][1] if t.status == C.PodStatus.RELEASING}
            for key in [k for k in by_job if k != latest]:
                vjob, tasks = by_job[key]
                todo = [t for t in tasks if t.status == C.PodStatus.RELEASING]
                if todo and not any(t.node_name in nodes for t in todo) and put_back(ssn, vjob, stmt, todo):
                    del by_job[key]
        for j in self._placement_order(job, [v for v, _ in by_job.values()]):
            if j is job:
                c = stmt.checkpoint()
                ok, _ = allocate_job(ssn, job, stmt)
                if not (ok and job.is_gang_satisfied()):
                    stmt.rollback(cp)
                    return "nofit"
                stmt.convert_to_pipelined(job.key)
                placed = [op.task for op in stmt.ops[c:]]
                have = None
                continue
            vjob, tasks = by_job[j.key]
            todo = [t for t in tasks if t.status == C.PodStatus.RELEASING]
            if not todo:
                continue
            chunk = victim_chunk(ssn, vjob, todo)
            need = np.zeros(width)
            for t in chunk:
                need += t.req_vec(width)
            if have is None:
                have = np.maximum(ssn.avail, 0).sum(axis=1)
            # the cheap bound first: a full cluster takes no victim back
            if chunk and (have + _EPS >= need).all() and place_again(ssn, vjob, stmt, chunk):
                have = None
            rest = [t for t in todo if t.status == C.PodStatus.RELEASING]
            if rest:
                lost[vjob.key] = rest
                if self.all_moved:
                    stmt.rollback(cp)
                    return "nofit"
        if self.validators:
            for t in placed:                  # the validators see the scenario before placement
                ssn.fire_deallocate(t)
            try:
                valid = all(fn(ssn, job, lost) for fn in self.validators)
            finally:
                for t in placed:
                    ssn.fire_allocate(t)
            if not valid:
                stmt.rollback(cp)
                return "invalid"
        return "ok"

    def _placement_order(self, job: PodGroupInfo, victim_jobs: list) -> list:
        """KAI places the preemptor and its victims in queue-fair job order
        (TryToVirtuallyAllocatePreemptorAndGetVictims pops them from a JobsOrderByQueues).
        Across queues the preemptor's queue comes first (reclaim only takes from queues over
        their share, preempt only from its own queue), unless a victim's queue has a higher
        priority and KAI's queue order, asked now (the scenario's evictions counted), puts it
        first too (:meth:`_victim_queue_first`); within its own queue a victim that orders
        before it by job order (consolidation's equal-priority victims, e.g. older jobs) is
        placed first. Victims keep job order among themselves."""
        key = self.ssn.job_order_key
        victims = sorted(victim_jobs, key=key)
        mine = key(job)
        before = [v for v in victims
                  if (v.queue == job.queue and key(v) < mine) or self._victim_queue_first(v, job)]
        after = [v for v in victims if v not in before]
        return before + [job] + after

    def _victim_queue_first(self, victim: PodGroupInfo, job: PodGroupInfo) -> bool:
        """Whether a victim in another queue goes before the preemptor: the two queues are
        compared where their paths part (the children of their lowest common ancestor, as
        KAI's queue-tree walk meets them); the victim's goes first when it has the higher
        priority and the session's queue order (over fair share and starvation come before
        priority there) agrees."""
        tree = self.ssn.queues
        pair = tree.leveled(job.queue, victim.queue) if victim.queue != job.queue else None
        if pair is None:
            return False
        pq, vq = tree.get(pair[0]), tree.get(pair[1])
        if vq.priority <= pq.priority:
            return False
        return self.ssn.queue_compare(vq, pq, victim, job) < 0

    def _evict(self, stmt: Statement, job: PodGroupInfo, chunk) -> None:
        for t in chunk[1]:
            stmt.evict(t, self.action, job.key)

    # ------------------------------------------------------------------ search
    def solve(self, job: PodGroupInfo, victims: VictimsOrderByQueues,
              max_victim_jobs: int | None = None) -> Solution | None:
        """The smallest victim prefix that places the job's next chunk, or None.

        ``max_victim_jobs`` caps how many distinct victim jobs may be taken (consolidation's
        ``--max-consolidation-preemptees``; None or negative: no cap)."""
        ssn = self.ssn
        taken: set[str] = set()
        tasks = job.tasks_to_allocate(ssn.task_order_key, ssn.podset_order_key)
        if not tasks:
            return None
        width = ssn.allocatable.shape[0]
        need = np.zeros(width)
        for t in tasks:
            need += t.req_vec(width)
        cols = np.flatnonzero(need > 0)
        have = np.maximum(ssn.avail, 0).sum(axis=1)[cols]
        need = need[cols]

        stmt = Statement(ssn)
        chunks: list = []
        cps = [stmt.checkpoint()]          # cps[i]: statement length with i chunks evicted
        k0 = None                          # first victim count passing the capacity bound
        last_fail = -1
        next_try = 0
        found = None
        while True:
            bound_ok = bool((have + _EPS >= need).all())
            if bound_ok and k0 is None:
                k0 = len(chunks)
                next_try = k0
            if bound_ok and len(chunks) >= next_try:
                res = self._try(job, stmt, chunks)
                k = len(chunks)
                if res == "ok":
                    found = k
                    break
                if res == "invalid" and k > 0 and k - k0 < SEQUENTIAL_TRIES:
                    vjob, ctasks = chunks.pop()
                    cps.pop()
                    stmt.rollback(cps[-1])
                    have -= self._freed(ctasks, cols, width)
                    victims.exclude(vjob)
                    next_try = len(chunks) + 1
                    last_fail = len(chunks)
                else:
                    last_fail = k
                    tries = k - k0 + 1
                    next_try = k + 1 if tries < SEQUENTIAL_TRIES else k + max(1, k - k0)
            nxt = victims.pop_chunk()
            if nxt is not None and max_victim_jobs is not None and max_victim_jobs >= 0 \
                    and nxt[0].key not in taken and len(taken) >= max_victim_jobs:
                nxt = None
            if nxt is None:
                k = len(chunks)
                if bound_ok and k > last_fail and k > 0 and self._try(job, stmt, chunks) == "ok":
                    found = k
                    break
                stmt.discard()
                return None
            vjob, ctasks = nxt
            if not ctasks:
                continue
            taken.add(vjob.key)
            self._evict(stmt, job, nxt)
            chunks.append(nxt)
            cps.append(stmt.checkpoint())
            have += self._freed(ctasks, cols, width)
            victims.push_back(vjob)

        # binary search for the smallest successful prefix in (last_fail, found]
        pos = {"evicted": found, "at": found}   # chunks evicted in stmt; prefix placed (or None)

        def goto(n: int) -> None:
            ev = pos["evicted"]
            stmt.rollback(cps[min(n, ev)])
            for i in range(ev, n):
                self._evict(stmt, job, chunks[i])
            pos["evicted"], pos["at"] = n, None

        lo, hi = max(last_fail + 1, k0 or 0), found
        while lo < hi:
            mid = (lo + hi) // 2
            goto(mid)
            if self._try(job, stmt, chunks[:mid]) == "ok":
                hi = pos["at"] = mid
            else:
                lo = mid + 1
        if pos["at"] != hi:
            goto(hi)
            if self._try(job, stmt, chunks[:hi]) != "ok":
                # placement is not monotonic here: go back to the scenario that worked
                hi = found
                goto(hi)
                if self._try(job, stmt, chunks[:hi]) != "ok":
                    stmt.discard()
                    return None
        chunks = chunks[:hi]
        return self._prune(job, stmt, chunks)

    @staticmethod
    def _freed(tasks, cols, width) -> np.ndarray:
        out = np.zeros(width)
        for t in tasks:
            out += t.req_vec(width)
            if t.gpu_sharing is not None:
                # a fraction's eviction may free each of its devices whole (when its group
                # empties): count them, so the bound stays an over-estimate
                out[GPU] += t.gpu_sharing.num_devices
        return out[cols]

    def _prune(self, job: PodGroupInfo, stmt: Statement, chunks: list) -> Solution:
        """Give back victim jobs none of whose evicted pods sit on a node the preemptor uses."""
        used = {op.node for op in stmt.ops if op.kind != EVICT and op.task.job_key == job.key}
        keep_jobs = set()
        # where each victim was evicted from (a moved victim's node_name is its new node)
        evicted_on = {id(op.task): op.node for op in stmt.ops if op.kind == EVICT}
        for vjob, tasks in chunks:
            if any(evicted_on.get(id(t)) in used for t in tasks):
                keep_jobs.add(vjob.key)
        kept = [c for c in chunks if c[0].key in keep_jobs]
        if len(kept) < len(chunks):
            stmt.discard()
            for c in kept:
                self._evict(stmt, job, c)
            if self._try(job, stmt, kept) == "ok":
                chunks = kept
            else:
                stmt.discard()
                for c in chunks:
                    self._evict(stmt, job, c)
                if self._try(job, stmt, chunks) != "ok":   # pragma: no cover - it worked before
                    stmt.discard()
                    raise RuntimeError("victim scenario no longer fits after pruning")
        return self._solution(stmt, chunks)

    def _solution(self, stmt: Statement, chunks: list) -> Solution:
        """Victims as committed: a pod placed back on its own node is kept, not a victim."""
        infos = self.ssn.node_infos
        evicted = {id(op.task): op for op in stmt.ops if op.kind == EVICT}
        victims: dict[str, list] = {}
        moved: dict[str, list] = {}
        for vjob, tasks in chunks:
            for t in tasks:
                if t.status == C.PodStatus.RELEASING:
                    victims.setdefault(vjob.key, []).append(t)
                    continue
                op = evicted.get(id(t))
                if op is not None and infos[op.node].name == t.node_name and (
                        op.dev is None or list(t.gpu_groups) == list(op.dev[2])):
                    continue            # back where it was: kept (a new GPU group is a move)
                victims.setdefault(vjob.key, []).append(t)
                moved.setdefault(vjob.key, []).append(t)
        return Solution(stmt, victims, moved)
