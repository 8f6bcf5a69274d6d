"""proportion: queue fair share, queue order and capacity checks (KAI's proportion plugin).

At session open (``pkg/scheduler/plugins/proportion/proportion.go``):

* One walk over the session's jobs fills, per leaf queue row, vectors [gpu devices, cpu
  millicores, memory bytes]:
  - allocated: Allocated|Bound|Binding|Running pods (KAI ``AllocatedStatus``), counted with
    their quota vector (whole GPUs, or fraction x devices);
  - allocated non-preemptible: the same for non-preemptible jobs;
  - request: allocated + Pending pods' requests.
  A gpu-memory pod counts, as in KAI, for its accepted portion on its node (MiB / the node's
  device memory, x devices) once placed, and for MiB / the smallest node device memory while
  pending -- in the capacity checks, the queue order and the reclaim rules too.
  ``aggregate_to_parents`` then adds every queue's descendants.
* Total capacity: allocatable of the Ready nodes (in use, not NotReady) minus what pods of
  other schedulers use there. kai's node arrays charge every pod on a node, ours and others',
  so per ready node ``allocatable - idle`` is everything charged; the walk above also sums
  the charges of kai's own tasks on nodes, and the difference is the other schedulers' use.
  (A kai-scheduler pod that is on a node but belongs to no job -- its PodGroup is missing --
  is counted as foreign here; KAI would not subtract it.) Clamped at 0. Plus the GPUs the
  nodes publish as DRA devices (``ClusterState.dra``, GPU device classes; kai.dra.quota).
* ``divide_fair_share`` (kai._fast.proportion) is called once with all queues, the plugin
  argument ``kValue`` (default 1.0; <= 0 becomes 0, as in KAI) and each queue's historical
  usage from ``ssn.state.queue_resource_usage`` (time-based fair share, ``kai.cache.usage_db``;
  zero without a usage DB).

Published: ``ssn.shares`` (:class:`kai.framework.session.QueueShares`, queue name -> numpy
[gpu, cpu, memory]; allocated and allocated-non-preemptible are live row views kept in sync
by the allocate/deallocate handlers).

Registered: the queue order (``kai.plugins.queue_order``), the OverLimit /
NonPreemptibleOverQuota job capacity check, the event handlers, and the reclaim hooks of
``kai.plugins.proportion_reclaim``.
"""
from __future__ import annotations

import functools
import weakref

import numpy as np

from kai._fast.proportion import aggregate_to_parents, allocatable_share, divide_fair_share
from kai.api import constants as C
from kai.api.podgroup_info import PodGroupInfo
from kai.api.quota import quota_tuple, quota_vector
from kai.api.resources import CPU, GPU, MEMORY
from kai.framework.plugin import Plugin, register_plugin
from kai.framework.session import QueueShares
from kai.plugins.proportion_reclaim import register_reclaim_hooks
from kai.plugins.queue_order import QueueOrder
from kai.plugins.restrictnodes import capacity_masks

_COLS = np.array([GPU, CPU, MEMORY], dtype=np.intp)
_PENDING = C.PodStatus.PENDING


class JobFigures:
    """Every job's queue figures (``Proportion._job_figures``), kept from one session to the
    next in the Scheduler's CycleMemory: one float64[12] row per job at the job's position in
    the cluster state's ``jobs`` order (rows of deleted jobs are zero), and its queue."""

    def __init__(self, state, node_key: tuple) -> None:
        # the state itself, weakly: an id could be a later state's at the same address
        self.state_ref = weakref.ref(state)
        self.epoch = getattr(state, "job_seq_epoch", 0)
        self.node_key = node_key
        self.seq = 0
        self.vals = np.zeros((0, 12))
        self.qid = np.zeros(0, dtype=np.intp)      # -1: no job in that slot
        self.used = 0                              # slots [0, used) are in use
        self.queue_names: list[str] = []
        self._queue_id: dict[str, int] = {}
        self.slot_of: dict[str, int] = {}

    def valid_for(self, state, node_key: tuple) -> bool:
        return (self.state_ref() is state and self.node_key == node_key
                and self.epoch == getattr(state, "job_seq_epoch", 0))

    def drop(self, key: str) -> None:
        slot = self.slot_of.pop(key, None)
        if slot is not None:
            self.vals[slot] = 0.0
            self.qid[slot] = -1

    def put_many(self, keys: list[str], slots: list[int], queues: list[str], values: list[tuple]) -> None:
        """``put`` for each (key, slot, queue, values), the rows written in one assignment
        (slots are distinct: positions of distinct jobs)."""
        if not keys:
            return
        if len(set(slots)) != len(slots):
            for k, s, q, v in zip(keys, slots, queues, values):
                self.put(k, s, q, v)
            return
        self._grow(max(slots))
        ids = self._queue_id
        qids = []
        for queue in queues:
            q = ids.get(queue)
            if q is None:
                q = ids[queue] = len(self.queue_names)
                self.queue_names.append(queue)
            qids.append(q)
        idx = np.array(slots, dtype=np.intp)
        self.vals[idx] = np.array(values, dtype=np.float64).reshape(len(keys), 12)
        self.qid[idx] = qids
        self.slot_of.update(zip(keys, slots))
        self.used = max(self.used, int(idx.max()) + 1)

    def _grow(self, slot: int) -> None:
        if slot >= len(self.vals):
            cap = max(slot + 1, 2 * len(self.vals), 1024)
            vals = np.zeros((cap, 12))
            vals[: len(self.vals)] = self.vals
            qid = np.full(cap, -1, dtype=np.intp)
            qid[: len(self.qid)] = self.qid
            self.vals, self.qid = vals, qid

    def put(self, key: str, slot: int, queue: str, values: tuple) -> None:
        self._grow(slot)
        q = self._queue_id.get(queue)
        if q is None:
            q = self._queue_id[queue] = len(self.queue_names)
            self.queue_names.append(queue)
        self.vals[slot] = values
        self.qid[slot] = q
        self.slot_of[key] = slot
        self.used = max(self.used, slot + 1)
_NAMES = ("gpu", "cpu", "memory")


def _fmt(i: int, v: float) -> str:
    if i == 2:
        return f"{v / 1e6:g}MB"
    if i == 1:
        return f"{v:g}m"
    return f"{v:g}"


@functools.lru_cache(maxsize=1 << 16)
def _over_message(kind: int, name: str, i: int, total: float, bound: float) -> str:
    """Why a capacity check refused (``Proportion.over_capacity``); kind 0: over a limit,
    1: a non-preemptible job over quota. Memoized: a queue held back asks again each cycle
    with the same figures."""
    if kind == 0:
        return (f"OverLimit: queue {name!r} would use {_fmt(i, total)} "
                f"{_NAMES[i]}, above its limit {_fmt(i, bound)}")
    return (f"NonPreemptibleOverQuota: non-preemptible job would bring queue {name!r} "
            f"to {_fmt(i, total)} {_NAMES[i]}, above its quota {_fmt(i, bound)}")


def k_value_argument(arguments: dict) -> float:
    try:
        k = float(arguments.get("kValue", 1.0))
    except (TypeError, ValueError):
        k = 1.0
    if not np.isfinite(k):
        k = 1.0
    return k if k > 0 else 0.0


def _min_node_gpu_memory_mib(ssn) -> float:
    best = 0.0
    for info in ssn.node_infos:
        if info is not None and info.gpu_memory_mib and (best == 0 or info.gpu_memory_mib < best):
            best = float(info.gpu_memory_mib)
    return best


@register_plugin
class Proportion(Plugin):
    name = "proportion"
    #: while a session opens: job key -> init request, for the queue order (``_lone_pending_figures``)
    lone_requests: dict[str, tuple] | None = None

    def quota_vector(self, task) -> np.ndarray:
        """The task's [gpu, cpu, memory] in queue quota, MIG instances as their GPUs, a
        gpu-memory request as the GPUs it takes (``memory_gpus``)."""
        v = quota_vector(task, self.mig_cols)
        gs = task.gpu_sharing
        if gs is not None and not gs.portion and gs.memory_mib:
            v[0] = self.memory_gpus(task)
        return v

    def quota_of(self, task) -> tuple[float, float, float]:
        """``quota_vector`` as a plain tuple; memoized for tasks without GPU sharing, whose
        vector depends only on the request array and the DRA GPUs (pods with equal requests
        share one array: a few entries, not one per pod), computed each time for the others."""
        if task.gpu_sharing is not None:
            return tuple(float(x) for x in self.quota_vector(task))
        req = task.req
        dra = task.dra_gpus
        key = id(req) if not dra else (id(req), dra)
        got = self._quota.get(key)
        if got is not None and got[0] is req:          # (the entry holds its array: ids stay unique)
            return got[1]
        value = quota_tuple(task, self.mig_cols)
        self._quota[key] = (req, value)
        return value

    def memory_gpus(self, task) -> float:
        """GPUs a gpu-memory task counts for, as in KAI: on a node, its accepted portion
        (MiB / that node's device memory) x devices; pending, MiB / the smallest device memory
        of the cluster x devices (``GetTasksToAllocateInitResource``)."""
        gs = task.gpu_sharing
        mem = 0.0
        if task.node_name and task.status != C.PodStatus.PENDING:
            info = self._nodes.by_name.get(task.node_name)
            if info is not None:
                mem = float(self._nodes.gpu_memory[info.idx])
        else:
            mem = self.min_gpu_memory
        return gs.num_devices * gs.memory_mib / mem if mem > 0 else 0.0

    def on_session_close(self, ssn) -> None:
        # this plugin and its queue order refer to each other: let go of the per-task memos
        # now rather than when the cyclic collector finds them
        self._quota.clear()
        self._bounded.clear()
        self.order = None

    # ------------------------------------------------------------------ session open
    def on_session_open(self, ssn) -> None:
        #: (column, g) of every MIG resource: a MIG instance counts as g GPUs (KAI GetGpusQuota)
        self.mig_cols = ssn.registry.mig_columns()
        #: id(request array) (and DRA GPUs) -> (the array, its quota tuple); see ``quota_of``
        self._quota: dict = {}
        self._bounded: dict[str, tuple[bool, bool]] = {}
        #: per queue row: (has a limit, has a deserved quota), made on the first capacity check
        self._bounded_rows: tuple[list, list] | None = None
        self._nodes = ssn.state.nodes
        self.min_gpu_memory = _min_node_gpu_memory_mib(ssn)
        tree = ssn.queues
        order = tree.topological()
        n = len(order)
        self.names = [q.name for q in order]
        self.index = index = {name: i for i, name in enumerate(self.names)}
        parent = np.array([index[q.parent] if q.parent else -1 for q in order], dtype=np.int32)
        self.parent = parent
        priority = np.array([q.priority for q in order], dtype=np.int64)
        ranked = sorted(range(n), key=lambda i: (order[i].creation, order[i].uid, order[i].name))
        order_key = np.empty(n, dtype=np.int64)
        order_key[ranked] = np.arange(n, dtype=np.int64)
        self.deserved = np.array([q.deserved for q in order], dtype=np.float64).reshape(n, 3)
        self.limit = np.array([q.limit for q in order], dtype=np.float64).reshape(n, 3)
        weight = np.array([q.weight for q in order], dtype=np.float64).reshape(n, 3)
        # rows of a queue and its ancestors, for the handlers and the capacity checks
        self.paths: dict[str, np.ndarray] = {}
        for i, q in enumerate(order):
            rows = [i]
            p = parent[i]
            while p >= 0:
                rows.append(int(p))
                p = parent[p]
            self.paths[q.name] = np.array(rows, dtype=np.intp)
        self.path_rows = {name: rows.tolist() for name, rows in self.paths.items()}

        self.lone_requests = {}
        alloc, alloc_np, request, kai_used = self._walk_jobs(ssn)
        self.alloc = aggregate_to_parents(parent, alloc) if n else alloc
        self.alloc_np = aggregate_to_parents(parent, alloc_np) if n else alloc_np
        self.request = aggregate_to_parents(parent, request) if n else request
        self.total = self._capacity(ssn, kai_used)
        self.k_value = k_value_argument(self.arguments)
        self.fair = np.zeros((n, 3))
        if n:
            divide_fair_share(parent, priority, order_key, self.deserved, self.limit, weight,
                              self.request, self._usage(ssn), self.total, self.k_value, self.fair)
        self.alloc_share = allocatable_share(self.deserved, self.fair, self.limit, np.zeros((n, 3)))

        names = self.names
        self.allocated = {name: self.alloc[i] for i, name in enumerate(names)}           # live views
        self.allocated_np = {name: self.alloc_np[i] for i, name in enumerate(names)}     # live views
        ssn.shares = QueueShares(
            allocated=self.allocated, allocated_nonpreemptible=self.allocated_np,
            fair_share={name: self.fair[i] for i, name in enumerate(names)},
            deserved={name: self.deserved[i] for i, name in enumerate(names)},
            request={name: self.request[i] for i, name in enumerate(names)},
            allocatable_share={name: self.alloc_share[i] for i, name in enumerate(names)},
            total=self.total)

        self.order = QueueOrder(self, ssn.task_order_key, ssn.podset_order_key)
        self.lone_requests = None               # (the order's now)
        ssn.queue_order_fns.append(self.order.compare)

        # (partials, not closures: one Python frame per placement instead of two)
        ssn.allocate_handlers.append(functools.partial(self._event, ssn, sign=1.0))
        ssn.deallocate_handlers.append(functools.partial(self._event, ssn, sign=-1.0))
        if not ssn.is_job_over_capacity_fns:
            ssn.capacity_by_request = True        # over_capacity reads queue, preemptible, quota
        ssn.is_job_over_capacity_fns.append(self.over_capacity)
        register_reclaim_hooks(ssn, self.arguments, self.quota_vector, self.quota_of)

    def _usage(self, ssn) -> np.ndarray:
        """Historical usage rows (time-based fair share, ``ssn.state.queue_resource_usage``);
        zeros for queues without history, and without a usage DB."""
        self.usage = usage = np.zeros((len(self.names), 3))
        for name, v in ssn.state.queue_resource_usage.items():
            i = self.index.get(name)
            if i is not None:
                usage[i] = v
        return usage
    def _job_figures(self, job, ready, by_name, mig_cols) -> tuple:
        """One job's (ag, ac, am, np_g, np_c, np_m, rq_g, rq_c, rq_m, kai_g, kai_c, kai_m):
        allocated, allocated if non-preemptible, request (allocated + pending) in queue quota,
        and the requests of its on-node pods charged on ready nodes."""
        kai_g = kai_c = kai_m = 0.0
        ag = ac = am = pg = pc = pm = 0.0
        allocated_mask = C.ALLOCATED
        on_node_mask = C.ON_NODE
        pending = C.PodStatus.PENDING
        for t in job.tasks.values():
            st = t.status
            if st & on_node_mask and t.node_name:
                info = by_name.get(t.node_name)
                if info is not None and ready[info.idx]:
                    r = t.req
                    kai_g += r[GPU]
                    kai_c += r[CPU]
                    kai_m += r[MEMORY]
            if st == pending and t.gpu_sharing is None:
                # memoized: the queue order and the handlers ask for it again this session
                g, c, m = self.quota_of(t)
            elif st & allocated_mask or st == pending:
                g, c, m = quota_tuple(t, mig_cols)
                gs = t.gpu_sharing
                if gs is not None and not gs.portion and gs.memory_mib:
                    g = self.memory_gpus(t)
            if st & allocated_mask:
                ag += g
                ac += c
                am += m
            elif st == pending:
                pg += g
                pc += c
                pm += m
        if job.preemptible:
            return (ag, ac, am, 0.0, 0.0, 0.0, ag + pg, ac + pc, am + pm, kai_g, kai_c, kai_m)
        return (ag, ac, am, ag, ac, am, ag + pg, ac + pc, am + pm, kai_g, kai_c, kai_m)

    def _lone_pending_figures(self, job) -> tuple | None:
        """``_job_figures`` of a job whose one pod is pending without GPU sharing (a
        single-pod job in a backlog): its quota vector as the request, nothing else (the
        same sums: 0.0 + x is x). None for any other job."""
        if len(job.tasks) != 1:
            return None
        t = next(iter(job.tasks.values()))
        if t.status != _PENDING or t.gpu_sharing is not None:
            return None
        v = self.quota_of(t)
        if job.__class__ is PodGroupInfo and len(job.podsets) == 1 and self.lone_requests is not None:
            # the queue order's init request of this job, as ``QueueOrder.init_request`` makes
            # it (its single-pod rule, the same quota_of tuple): handed to the session's order,
            # read while the job is in cache rather than when it first heads its queue
            self.lone_requests[job.key] = v
        g, c, m = v
        return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0 + g, 0.0 + c, 0.0 + m, 0.0, 0.0, 0.0)

    def _walk_jobs(self, ssn):
        """Per-leaf allocated / non-preemptible / request rows, and the [gpu, cpu, memory]
        charged on ready nodes by kai's own on-node tasks.

        Each job's figures (``_job_figures``) are kept in the Scheduler's CycleMemory
        (:class:`JobFigures`) and recomputed only for the jobs the cluster state reports
        changed since the last session -- or for every job when the nodes' layout, readiness
        or GPU memory or the MIG columns changed -- so a steady cluster of a million running
        pods costs the jobs that changed. The rows are then summed in job order, as a walk
        over every job would (the kai totals add per-job subtotals: the same sums for the
        integer-valued requests pods have)."""
        n = len(self.names)
        alloc = np.zeros((n, 3))
        alloc_np = np.zeros((n, 3))
        request = np.zeros((n, 3))
        state = ssn.state
        nodes = state.nodes
        ready = nodes.in_use.astype(bool) & ~nodes.not_ready.astype(bool)
        by_name = nodes.by_name
        mig_cols = self.mig_cols
        node_key = (nodes.layout, hash(ready.tobytes()), hash(nodes.gpu_memory.tobytes()), tuple(mig_cols),
                    self.min_gpu_memory)
        fig = ssn.memory.proportion_jobs
        incremental = hasattr(state, "changed_since")
        if fig is None or not incremental or not fig.valid_for(state, node_key):
            fig = JobFigures(state, node_key)
            if incremental:
                ssn.memory.proportion_jobs = fig
            changed = list(ssn.jobs)
            fresh = True                    # no job has figures to drop
        else:
            changed = state.changed_since(fig.seq)
            fresh = False
        position = state.job_position if incremental else {k: i for i, k in enumerate(ssn.jobs)}.get
        rows: list[tuple] = []
        jobs = ssn.jobs
        lone_pending = self._lone_pending_figures
        for key in changed:
            if not fresh:
                fig.drop(key)
            job = jobs.get(key)
            slot = position(key)
            if job is not None and slot is not None:
                got = lone_pending(job)
                if got is None:
                    got = self._job_figures(job, ready, by_name, mig_cols)
                rows.append((key, slot, job.queue, got))
        if rows:
            keys, slots, queues, values = zip(*rows)
            fig.put_many(list(keys), list(slots), list(queues), list(values))   # one assignment
        if incremental:
            fig.seq = state.change_seq
        used = fig.used
        vals = fig.vals[:used]
        if used:
            q2row = np.array([self.index.get(q, -1) for q in fig.queue_names], dtype=np.intp)
            rows = q2row[fig.qid[:used]] if len(q2row) else np.full(used, -1, dtype=np.intp)
            rows[fig.qid[:used] < 0] = -1
            keep = rows >= 0
            idx = rows[keep]
            v = vals[keep]
            # per column, bincount adds the weights into their bins in input order, one
            # addition at a time: the sums np.add.at makes, at a fraction of its cost
            for c, target in enumerate((alloc, alloc, alloc, alloc_np, alloc_np, alloc_np,
                                        request, request, request)):
                target[:, c % 3] += np.bincount(idx, weights=v[:, c], minlength=n)
            kai = np.cumsum(vals[:, 9:12], axis=0)[-1]          # left to right, as a walk adds
        else:
            kai = np.zeros(3)
        return alloc, alloc_np, request, np.array(kai)

    @staticmethod
    def _capacity(ssn, kai_used: np.ndarray) -> np.ndarray:
        nodes = ssn.state.nodes
        nodes.ensure_width()
        ready = nodes.in_use.astype(bool) & ~nodes.not_ready.astype(bool)
        restricted = capacity_masks(nodes, ssn.config)      # --restrict-node-scheduling
        gpu_nodes = ready
        if restricted is not None:
            ready = ready & restricted[0]
            gpu_nodes = ready & restricted[1]
        cols = _COLS
        if not ready.any():
            return np.zeros(3)
        allocatable = nodes.allocatable[cols][:, ready].sum(axis=1)
        charged = (nodes.allocatable[cols][:, ready] - nodes.idle[cols][:, ready]).sum(axis=1)
        if restricted is not None:     # GPUs of nodes that are not GPU workers are not counted
            allocatable[0] = nodes.allocatable[cols[0], gpu_nodes].sum()
            charged[0] = (nodes.allocatable[cols[0], gpu_nodes] - nodes.idle[cols[0], gpu_nodes]).sum()
        # a shared-GPU group holds a whole device for kai's fraction pods (counted by portion
        # in the walk): those devices are not another scheduler's use
        if nodes.dev_used.shape[1]:
            charged[0] -= float((nodes.dev_used[gpu_nodes] > 1e-9).sum())
        foreign = np.maximum(charged - kai_used, 0.0)
        total = np.maximum(allocatable - foreign, 0.0)
        if ssn.state.dra is not None:           # GPUs published as DRA devices (kai.dra.quota)
            total[0] += ssn.state.dra.gpu_capacity(nodes, ready)
        return total

    # ------------------------------------------------------------------ handlers / checks
    def _event(self, ssn, task, sign: float) -> None:
        job = ssn.jobs.get(task.job_key)
        if job is None:
            return
        rows = self.path_rows.get(job.queue)
        self.order.forget(job.key, rows if rows is not None else ())
        if rows is None:
            return
        gs = task.gpu_sharing
        if gs is None:
            # quota_of: (gpu + MIG + DRA GPUs, cpu, memory), memoized per task and shared with
            # the queue order's init requests
            v = self.quota_of(task)
        else:
            v = task.req.take(_COLS)             # [gpu, cpu, memory]
            v[0] = gs.portion * gs.num_devices if gs.portion else self.memory_gpus(task)
            v[0] += task.dra_gpus                # DRA GPUs (kai.dra.quota)
            v = tuple(v.tolist())
        rows_view = self.order.rows
        if rows_view is not None:                # compiled: the same adds, row by row
            rows_view.charge(rows, v[0], v[1], v[2], sign, not job.preemptible)
            return
        # row by row (a path holds each row once): cheaper than a fancy-indexed add for the
        # two or three rows of a path, and exact (x - v is x + (-v))
        v = np.array(v)
        alloc, alloc_np = self.alloc, (self.alloc_np if not job.preemptible else None)
        for r in rows:
            if sign > 0:
                alloc[r] += v
                if alloc_np is not None:
                    alloc_np[r] += v
            else:
                alloc[r] -= v
                if alloc_np is not None:
                    alloc_np[r] -= v

    def over_capacity(self, job, tasks) -> str | None:
        """OverLimit for the leaf and every ancestor; NonPreemptibleOverQuota for non-preemptible jobs."""
        rows = self.paths.get(job.queue)
        if rows is None:
            return None
        bounded = self._bounded.get(job.queue)
        if bounded is None:
            # (any limit on the path, any deserved quota on the path): fixed for the session
            marks = self._bounded_rows
            if marks is None:
                marks = self._bounded_rows = ((self.limit != -1).any(axis=1).tolist(),
                                              (self.deserved != -1).any(axis=1).tolist())
            path = self.path_rows[job.queue]
            bounded = self._bounded[job.queue] = (any(marks[0][r] for r in path),
                                                  any(marks[1][r] for r in path))
        if not bounded[0] and (job.preemptible or not bounded[1]):
            return None                   # nothing on the path can refuse it
        g = c = m = 0.0
        for t in tasks:
            v = self.quota_of(t)
            g += v[0]
            c += v[1]
            m += v[2]
        req = (g, c, m)
        rows_view = self.order.rows
        if rows_view is not None and rows_view.limit is self.limit:
            # compiled: the same comparisons in the same order (kai._fast.queueview.first_over)
            path = self.path_rows[job.queue]
            code = rows_view.first_over(path, g, c, m, not job.preemptible)
            if code < 0:
                return None
            k, rest = divmod(code, 6)
            kind, i = divmod(rest, 3)
            row = path[k]
            if kind == 0:
                return _over_message(0, self.names[row], i, float(self.alloc[row, i]) + req[i],
                                     float(self.limit[row, i]))
            return _over_message(1, self.names[row], i, float(self.alloc_np[row, i]) + req[i],
                                 float(self.deserved[row, i]))
        alloc_rows = self.alloc[rows].tolist()
        limit_rows = self.limit[rows].tolist()
        np_rows = self.alloc_np[rows].tolist() if not job.preemptible else None
        des_rows = self.deserved[rows].tolist() if not job.preemptible else None
        for k, row in enumerate(rows):
            alloc = alloc_rows[k]
            lim = limit_rows[k]
            for i in range(3):
                if req[i] > 0 and lim[i] != -1 and alloc[i] + req[i] > lim[i] + 1e-9:
                    return _over_message(0, self.names[row], i, alloc[i] + req[i], lim[i])
            if np_rows is not None:
                anp = np_rows[k]
                des = des_rows[k]
                for i in range(3):
                    if req[i] > 0 and des[i] != -1 and anp[i] + req[i] > des[i] + 1e-9:
                        return _over_message(1, self.names[row], i, anp[i] + req[i], des[i])
        return None
