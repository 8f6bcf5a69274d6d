"""KAI's queue comparator (proportion ``queue_order/queue_order.go``, ``GetQueueOrderResult``).

``QueueOrder(state).compare(lq, rq, lj, rj, lv=None, rv=None)`` returns -1 when the left queue
goes first, 1 when the right one does, 0 when undecided. ``lj``/``rj`` are the head pending
jobs of the two subtrees (KAI passes nil in victim mode), ``lv``/``rv`` optional victim job
lists (KAI's victim mode: all jobs already popped from that queue plus the next one).

The rules, first decisive one wins:

1. Not over fair share first. KAI's ``FairShareLessThanAllocated`` is *strict in every
   resource*: a queue is "over" only when allocated > fairShare for gpu, cpu AND memory
   (``ResourceQuantities.Less``), not when it is over in one resource.
2. Starved first: allocated + the head job's init request <= deserved in every resource
   (deserved -1 = unlimited; 1e-9 tolerance, ``AllocatedPlusResourcesLessEqualDeserved``).
3. Higher queue priority first.
4. Zero-share penalty: a queue whose allocatable share is 0 in a resource it would use
   (allocated + job > 0) goes after one that has no such resource.
5. Smaller dominant resource share with the job added and the victims' allocation removed.
6. Smaller dominant resource share as is.
7. Smaller allocatable share (<= in all resources, < in one; -1 is the largest).
8. Earlier creation time. On equal timestamps KAI answers "right first" whatever the
   arguments; this returns 0 so the session's deterministic fallback (name) decides.

DRS = max over resources of allocated / allocatableShare, where an allocatable share of -1
is replaced by the cluster total and a share of 0 gives allocated x 1000
(``QueueResourceShare.GetDominantResourceShare``). All vectors are [gpu, cpu millicores,
memory bytes].

The job's init request is the quota vector summed over ``tasks_to_allocate`` (the gang chunk,
or the one elastic extra), cached per job; each queue's view for a head job (rules 1, 2, 4,
5, 6) is cached too, per queue row. The plugin's allocate/deallocate handlers call ``forget``
with the rows of the job's queue and its ancestors (the only allocated vectors that moved), which
drops those rows' views and the job's request, so decisions made earlier in the cycle are seen
and the other queues' views are kept. The allocated vectors must therefore change only through
those handlers.
"""
from __future__ import annotations

import numpy as np

from kai._fast.queueview import QueueRows
# resource_share.compareQuantities (-1 is unlimited, equal within 1e-9): the plain-Python rules
# here (scenarios with victims) read the quantities as the compiled kernel's twin does
from kai._fast.reference.queueview import NO_FAIR_SHARE_DRF_MULTIPLIER, TOLERANCE, UNLIMITED, _cmp_quantity
from kai.api import constants as C
from kai.api.podgroup_info import PodGroupInfo

_ZERO = (0.0, 0.0, 0.0)
_INF = float("inf")
_PENDING = C.PodStatus.PENDING


def less_equal(a, b) -> bool:
    return all(_cmp_quantity(x, y) <= 0 for x, y in zip(a, b))


class QueueOrder:
    """The comparator over a proportion plugin's per-queue arrays.

    ``state`` provides: ``index`` (queue name -> row), ``alloc`` (numpy [Q, 3], live),
    ``fair``, ``deserved``, ``alloc_share`` ([Q, 3] each, fixed for the session), ``total``
    ([3]), and ``quota_vector(task)``; ``task_order_key``/``podset_order_key`` order the
    job's tasks as the allocate action does.
    """

    def __init__(self, state, task_order_key, podset_order_key=None) -> None:
        self.index = state.index
        self.alloc = state.alloc
        self.quota_vector = state.quota_vector
        #: the same vector as a plain tuple, when the state offers it (cheaper to sum)
        self.quota_tuple = getattr(state, "quota_of", None) or state.quota_vector
        self.task_order_key = task_order_key
        self.podset_order_key = podset_order_key
        total = [float(x) for x in state.total]
        self.fair = [tuple(r) for r in state.fair.tolist()]
        self.deserved = [tuple(r) for r in state.deserved.tolist()]
        self.share = [tuple(r) for r in state.alloc_share.tolist()]
        # DRS denominators: -1 -> cluster total
        self.denom = [tuple(total[c] if s == UNLIMITED else s for c, s in enumerate(row)) for row in self.share]
        #: job key -> init request; a state may hand some in (``lone_requests``, taken over:
        #: the values ``init_request`` gives, made while it walked the jobs)
        handed = getattr(state, "lone_requests", None)
        self._req: dict[str, tuple] = handed if isinstance(handed, dict) else {}
        self._stats: dict[int, dict] = {}          # queue row -> {head job key: stats}
        #: the same rows for the compiled views (kai._fast.queueview), over the live ``alloc``;
        #: None when the state's arrays do not fit it (then ``stats`` computes in Python)
        self.rows: QueueRows | None = None
        alloc = state.alloc
        if isinstance(alloc, np.ndarray) and alloc.ndim == 2 and alloc.shape[1] == 3:
            n = alloc.shape[0]
            alloc_np = getattr(state, "alloc_np", None)
            try:
                self.rows = QueueRows(
                    alloc, alloc_np if alloc_np is not None else np.zeros((n, 3)),
                    np.array(self.fair, dtype=np.float64).reshape(n, 3),
                    np.array(self.deserved, dtype=np.float64).reshape(n, 3),
                    np.array(self.share, dtype=np.float64).reshape(n, 3),
                    np.array(self.denom, dtype=np.float64).reshape(n, 3),
                    # the plugin's own limit rows (its capacity check reads them through here)
                    getattr(state, "limit", None))
            except ValueError:
                self.rows = None

    # ------------------------------------------------------------------ job vectors
    def forget(self, job_key: str, rows=None) -> None:
        """A task of this job was (de)allocated: its request is stale, and so are the views of
        ``rows`` (its queue and the ancestors, whose allocated vectors moved; None: every row)."""
        self._req.pop(job_key, None)
        if rows is None:
            self._stats.clear()
            return
        pop = self._stats.pop
        for r in rows:
            pop(r, None)

    def init_request(self, job) -> tuple:
        """Quota vector of the job's next allocation chunk (KAI GetTasksToAllocateInitResource)."""
        if job is None:
            return _ZERO
        got = self._req.get(job.key)
        if got is None:
            if job.__class__ is PodGroupInfo and len(job.tasks) == 1 and len(job.podsets) == 1:
                # a single-pod job's chunk is its pod while pending (tasks_to_allocate's rule);
                # its sum is the pod's vector (0.0 + x is x)
                for t in job.tasks.values():
                    got = tuple(self.quota_tuple(t)) if t.status == _PENDING else _ZERO
            else:
                g = c = m = 0.0
                for t in job.tasks_to_allocate(self.task_order_key, self.podset_order_key):
                    v = self.quota_tuple(t)
                    g += v[0]
                    c += v[1]
                    m += v[2]
                got = (g, c, m)
            self._req[job.key] = got
        return got

    #: What ``compare`` reads from a head job: its init request (JobsOrderByQueues keeps its
    #: picks across heads that look the same). A function of the init request alone
    #: (JobsOrderByQueues then needs no view check between jobs a look-alike relation says
    #: share their init request).
    job_view = init_request
    init_request.reads_init_request = True

    #: ``compare`` reads each queue's own row (alloc moved by events, the rest fixed for the
    #: session) and its head job's init request: an allocation event of a job moves only the
    #: rows of its queue's path (``_event`` charges those), so a job walk re-asks only them
    #: (kai.actions.common.job_order.path_local_fn)
    path_local = True

    def total_over(self, queues) -> bool:
        """True when ``compare`` is a total preorder over these queues whatever their head
        jobs: every rule but 7 compares one key per queue, so it is total when the queues'
        allocatable-share vectors form a chain (each pair comparable in every resource, -1
        the largest) whose steps are either zero or wider than the tolerance ``less_equal``
        allows (so the tolerant and the exact comparisons agree). A queue without figures
        makes it unknown (False)."""
        rows = set()
        for q in queues:
            i = self.index.get(q.name)
            if i is None:
                return False
            rows.add(self.share[i])
        if len(rows) < 2:
            return True
        chain = sorted(tuple(_INF if x == UNLIMITED else x for x in row) for row in rows)
        for lo, hi in zip(chain, chain[1:]):
            for a, b in zip(lo, hi):
                if b < a or (a != b and not b - a > TOLERANCE):
                    return False
        return True

    def victims_allocated(self, victims) -> tuple:
        """Sum of the victims' allocated (Allocated|Bound|Binding|Running) quota vectors."""
        g = c = m = 0.0
        for job in victims or ():
            for t in job.tasks.values():
                if t.status & C.ALLOCATED:
                    v = self.quota_vector(t)
                    g += v[0]
                    c += v[1]
                    m += v[2]
        return (g, c, m)

    def drs(self, i: int, alloc) -> float:
        best = 0.0
        for a, d in zip(alloc, self.denom[i]):
            v = a * NO_FAIR_SHARE_DRF_MULTIPLIER if d == 0 else a / d
            if v > best:
                best = v
        return best

    def stats(self, i: int, job, victims=None) -> tuple:
        """(over fair share, starved, zero-share penalty, DRS with job - victims, DRS) of queue row i.

        Cached per (queue, head job) until the next allocate/deallocate event, so one pop of
        the job queue computes each queue's view once however many comparisons it makes.
        Written out per resource (gpu, cpu, memory) on the hot path; ``stats_reference``
        is the same rules over the vectors, and a property test holds them equal."""
        key = job.key if job is not None else None
        if not victims:
            row = self._stats.get(i)
            if row is not None:
                got = row.get(key)
                if got is not None:
                    return got
            if self.rows is not None:
                r0, r1, r2 = self.init_request(job)
                got = self.rows.stats(i, r0, r1, r2)
                if row is None:
                    self._stats[i] = {key: got}
                else:
                    row[key] = got
                return got
        a0, a1, a2 = self.alloc[i].tolist()
        f0, f1, f2 = self.fair[i]
        over = f0 < a0 and f1 < a1 and f2 < a2
        r0, r1, r2 = self.init_request(job)
        w0, w1, w2 = a0 + r0, a1 + r1, a2 + r2
        d0, d1, d2 = self.deserved[i]
        # less_equal(with_job, deserved): deserved -1 is unlimited, 1e-9 tolerance
        starved = ((d0 == UNLIMITED or (w0 != UNLIMITED and (w0 <= d0 or abs(w0 - d0) <= TOLERANCE)))
                   and (d1 == UNLIMITED or (w1 != UNLIMITED and (w1 <= d1 or abs(w1 - d1) <= TOLERANCE)))
                   and (d2 == UNLIMITED or (w2 != UNLIMITED and (w2 <= d2 or abs(w2 - d2) <= TOLERANCE))))
        s0, s1, s2 = self.share[i]
        zero = (s0 == 0 and w0 > 0) or (s1 == 0 and w1 > 0) or (s2 == 0 and w2 > 0)
        if victims:
            v0, v1, v2 = self.victims_allocated(victims)
            w0, w1, w2 = w0 - v0, w1 - v1, w2 - v2
        n0, n1, n2 = self.denom[i]
        m = NO_FAIR_SHARE_DRF_MULTIPLIER
        best = 0.0
        v = w0 * m if n0 == 0 else w0 / n0
        if v > best:
            best = v
        v = w1 * m if n1 == 0 else w1 / n1
        if v > best:
            best = v
        v = w2 * m if n2 == 0 else w2 / n2
        if v > best:
            best = v
        drs_job = best
        best = 0.0
        v = a0 * m if n0 == 0 else a0 / n0
        if v > best:
            best = v
        v = a1 * m if n1 == 0 else a1 / n1
        if v > best:
            best = v
        v = a2 * m if n2 == 0 else a2 / n2
        if v > best:
            best = v
        got = (over, starved, zero, drs_job, best)
        if not victims:
            self._stats.setdefault(i, {})[key] = got
        return got

    def stats_reference(self, i: int, job, victims=None) -> tuple:
        """``stats`` as the rules read, over the vectors (no cache): the reference it is
        checked against."""
        alloc = self.alloc[i].tolist()
        over = all(f < a for f, a in zip(self.fair[i], alloc))
        req = self.init_request(job)
        with_job = [a + r for a, r in zip(alloc, req)]
        starved = less_equal(with_job, self.deserved[i])
        zero = any(s == 0 and a > 0 for s, a in zip(self.share[i], with_job))
        if victims:
            with_job = [a - v for a, v in zip(with_job, self.victims_allocated(victims))]
        return (over, starved, zero, self.drs(i, with_job), self.drs(i, alloc))

    # ------------------------------------------------------------------ comparator
    def compare(self, lq, rq, lj=None, rj=None, lv=None, rv=None) -> int:
        li = self.index.get(lq.name)
        ri = self.index.get(rq.name)
        if li is None or ri is None:           # KAI: a queue without attributes goes last
            return 0 if li is None and ri is None else (1 if li is None else -1)
        rows = self.rows
        if rows is not None and not lv and not rv:
            # rules 1-7 compiled (kai._fast.queueview, the same rules as below), then 8;
            # the init requests from their memo when there (``init_request``, inlined)
            req = self._req
            got = req.get(lj.key) if lj is not None else _ZERO
            l0, l1, l2 = got if got is not None else self.init_request(lj)
            got = req.get(rj.key) if rj is not None else _ZERO
            r0, r1, r2 = got if got is not None else self.init_request(rj)
            got = rows.compare(li, ri, l0, l1, l2, r0, r1, r2, lq.priority, rq.priority)
            if got:
                return got
            if lq.creation != rq.creation:
                return -1 if lq.creation < rq.creation else 1
            return 0
        lover, lst, lz, ldj, ld = self.stats(li, lj, lv)
        rover, rst, rz, rdj, rd = self.stats(ri, rj, rv)
        # 1. over fair share (strictly, in every resource) goes last
        if lover != rover:
            return 1 if lover else -1
        # 2. starved: stays within deserved with the head job
        if lst != rst:
            return -1 if lst else 1
        # 3. queue priority
        if lq.priority != rq.priority:
            return -1 if lq.priority > rq.priority else 1
        # 4. zero allocatable share in a resource the queue would use
        if lz != rz:
            return 1 if lz else -1
        # 5. dominant resource share with the job (minus victims)
        if ldj != rdj:
            return -1 if ldj < rdj else 1
        # 6. dominant resource share without the job
        if ld != rd:
            return -1 if ld < rd else 1
        # 7. the "weaker" queue (smaller allocatable share) first
        ls, rs = self.share[li], self.share[ri]
        if ls != rs:
            l_le, r_le = less_equal(ls, rs), less_equal(rs, ls)
            if l_le and not r_le:
                return -1
            if r_le and not l_le:
                return 1
        # 8. creation time
        if lq.creation != rq.creation:
            return -1 if lq.creation < rq.creation else 1
        return 0


__all__ = ["QueueOrder", "less_equal"]
