"""Session: one scheduling cycle's view of the cluster, plus the plugin callbacks.

Opened from a ClusterState: the session gets its own copies of the node arrays (idle,
releasing, avail), the live job objects, and the queue tree. Plugins register callbacks
in ``on_session_open`` (KAI's extension points, with KAI's names); actions call the
dispatch helpers below. Closing the session undoes what was only virtual (pipelined
tasks go back to Pending) and runs the plugins' ``on_session_close``.

Everything a plugin publishes for others is a declared field (``__slots__``: assigning an
undeclared attribute raises): queue figures in :class:`QueueShares` (proportion), the
shared-GPU allocator and GPU order (gpusharing), and :class:`CycleMemory`, the only state
that outlives a session (owned by the Scheduler, e.g. FGD's decayed task-type history).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kai._fast.domains import DomainConstraints
from kai._fast.placement import STRATEGY_BINPACK, NodeArrays, NodeQueue, Placements, TouchLog
from kai.api import constants as C
from kai.api.pod_info import PodInfo
from kai.api.podgroup_info import PodGroupInfo, default_task_order_key
from kai.api.queue_info import QueueInfo, QueueTree, project_level_queues
from kai.api.resources import GPU
from kai.cache.cluster_state import ClusterState
from kai.framework.predicate import PIPELINE_ONLY, NodePredicate

S = C.PodStatus

#: fn(ssn, stmt, task, job) -> (ok, reason): places one fraction / gpu-memory task
SharedGpuAllocator = Callable[..., tuple[bool, str]]


@dataclass(eq=False)
class QueueShares:
    """Queue figures the proportion plugin publishes at session open.

    Every map is queue name -> float64[3] ``[gpu devices, cpu millicores, memory bytes]``,
    for the queue and its descendants. ``allocated`` and ``allocated_nonpreemptible`` are live
    row views, kept in sync with virtual allocations and evictions by proportion's handlers;
    the others are fixed for the session. ``deserved`` keeps -1 (unlimited)."""
    allocated: dict[str, np.ndarray]
    allocated_nonpreemptible: dict[str, np.ndarray]
    fair_share: dict[str, np.ndarray]
    deserved: dict[str, np.ndarray]
    request: dict[str, np.ndarray]
    allocatable_share: dict[str, np.ndarray]
    total: np.ndarray                      # float64[3]: capacity the division shared out

    def fair_share_of(self, name: str) -> dict[str, float] | None:
        v = self.fair_share.get(name)
        return None if v is None else dict(zip(("gpu", "cpu", "memory"), (float(x) for x in v)))


@dataclass(eq=False)
class CycleMemory:
    """State kept from one session to the next, owned by the Scheduler (not module globals).

    ``fgd_history``: FGD's decayed task-type histogram {type key: weight} (``fgdDecay``).
    ``proportion_jobs``: the proportion plugin's per-job queue figures
    (kai.plugins.proportion.JobFigures), recomputed only for the jobs that changed.
    ``stale_watch``: the jobs stalegangeviction must look at next time."""
    fgd_history: dict[tuple, float] = field(default_factory=dict)
    proportion_jobs: object = None
    #: stalegangeviction's watch list (kai.actions.stale_gang_eviction.StaleWatch)
    stale_watch: object = None
    #: the job order keys of untouched jobs (``Session.job_order_key``)
    order_keys: object = None
    #: reclaim's and preempt's candidates by leaf, sorted, with their look-alike runs
    #: (kai.actions.common.shared_walk.PendingIndex)
    pending_index: object = None
    #: the victim candidates by queue, sorted (kai.actions.common.victims.VictimIndex)
    victim_index: object = None
    #: cycles the Scheduler has run (an index kept across cycles is first built by the
    #: allocate pass in the second one: a cycle with nothing after it would only pay for it)
    cycles: int = 0


class OrderKeyMemo:
    """Job order keys kept from one session to the next: ``keys`` maps job key -> its key as
    of ``state``'s change number ``seq``, for the key fns named by ``fns`` under ``config``.
    Valid because a job order key fn reads only its job (spec, pods and their statuses), and
    every change to a job outside a session bumps its change number."""

    __slots__ = ("state", "config", "fns", "seq", "keys")

    def __init__(self, state, config, fns: tuple, seq: int) -> None:
        self.state = state
        self.config = config
        self.fns = fns
        self.seq = seq
        self.keys: dict[str, tuple] = {}


class LoneClass:
    """One class of single tasks (``Statement.allocate_one``): what ``allocate_run`` would
    rebuild for each of them. ``mask`` is held so its id stays a valid key; ``out`` is a
    one-task output buffer reused by every task of the class (the op copies its undo row)."""

    __slots__ = ("mask", "req", "req_cols", "score_col", "strategy", "cpu_only", "out", "queue")

    def __init__(self, mask, req, req_cols, score_col, strategy, cpu_only, out) -> None:
        self.mask = mask
        self.req = req                  # float64[R], the class's request (a private copy)
        self.req_cols = req_cols        # int32[K]: columns where req > 0
        self.score_col = score_col
        self.strategy = strategy
        self.cpu_only = cpu_only
        self.out = out                  # Placements(1, R)
        self.queue: NodeQueue | None = None     # the session's lazy node queue, on first use


#: the Session's lists of plugin hooks (cleared at close: the hooks close over the session)
_HOOKS = ("job_order_keys", "queue_order_fns", "pre_predicate_fns", "node_predicates", "node_mask_fns",
          "node_order_fns", "subset_nodes_fns", "is_job_over_capacity_fns", "allocate_handlers",
          "deallocate_handlers", "pipeline_handlers", "can_reclaim_fns", "reclaim_victim_filter_fns",
          "preempt_victim_filter_fns", "reclaim_scenario_validator_fns", "preempt_scenario_validator_fns")


def session_queue_tree(state, full_hierarchy_fairness: bool) -> QueueTree:
    """The queue tree of a session over ``state`` (read-only to the session: QueueTree and
    QueueInfo do not change once built). The last tree built is handed out again while the
    state holds the very same Queue objects, in the same order: the informer and the loaders
    put a new object in for every change, and nothing edits a Queue in place, so thousands of
    queues are validated and linked once, not every cycle."""
    queues = list(state.queues.values())
    kept = getattr(state, "__dict__", None)
    memo = kept.get("_queue_tree_memo") if kept is not None else None
    if memo is not None and memo[0] == full_hierarchy_fairness and len(memo[1]) == len(queues) \
            and all(a is b for a, b in zip(memo[1], queues)):
        return memo[2]
    given = queues
    flattened: dict[str, str] = {}
    if not full_hierarchy_fairness:
        queues, flattened = project_level_queues(queues)
    tree = QueueTree(queues)
    tree.problems.update(flattened)
    # (the Queue objects are held: their ids cannot be reused while the memo stands)
    if kept is not None:
        kept["_queue_tree_memo"] = (full_hierarchy_fairness, given, tree)
    return tree


class Session:
    """Snapshot + registered callbacks + dispatch. Actions run against one open Session."""

    __slots__ = (
        "state", "cache", "config", "now", "memory", "allocatable", "idle", "releasing", "avail",
        "gpu_capacity", "arrays", "dev_used", "dev_alloc", "dev_rel", "dev_from_rel", "group_names", "name_rank",
        "node_infos", "touch_log", "_node_queues", "registry", "jobs", "queues", "pipelined", "fit_errors",
        "results_log", "job_order_keys", "task_order_key", "podset_order_key", "queue_order_fns",
        "pre_predicate_fns", "node_predicates", "node_mask_fns", "node_order_fns", "subset_nodes_fns", "node_set",
        "is_job_over_capacity_fns", "allocate_handlers", "deallocate_handlers", "pipeline_handlers",
        "can_reclaim_fns",
        "reclaim_victim_filter_fns", "preempt_victim_filter_fns", "reclaim_scenario_validator_fns",
        "preempt_scenario_validator_fns", "shares", "shared_gpu_allocator", "gpu_order",
        "gpu_sharing_order_score", "gpu_portions", "placement", "plugins", "pod_counts", "_applying", "_req_cols", "pending_jobs", "touched_jobs", "alloc_events", "event_queues",
        "capacity_by_request", "lone_classes", "_chunks", "action_memo", "_order_keys", "_applies_groups",
        "is_warm", "_carried_terms",
    )

    #: answer runs of placements from lazy node queues when no plugin scores nodes; a class-wide
    #: switch (False forces a full scan per decision: the benchmarks' algorithmic baseline)
    use_node_queues = True

    def __init__(self, state: ClusterState, cache, config, now: float | None = None,
                 memory: CycleMemory | None = None, is_warm: bool = False) -> None:
        self.state = state
        #: a warm-up session (``Scheduler.warm``): no action runs, and it is not a cycle of
        #: what counts cycles in ``memory`` (FGD's decayed history)
        self.is_warm = is_warm
        self.cache = cache
        self.config = config
        self.now = time.time() if now is None else now
        self.memory = memory if memory is not None else CycleMemory()
        #: the PodTable's carried terms (a dict kept current in place; see ``predicate_epoch``)
        self._carried_terms = state.carried_terms
        t = state.nodes
        t.set_mig_label_key(config.mig_worker_node_label_key)
        t.ensure_width()
        t.refresh_rank()
        self.allocatable = t.allocatable
        self.idle = t.idle.copy()
        self.releasing = t.releasing.copy()
        self.avail = t.avail.copy()
        self.gpu_capacity = t.gpu_capacity
        # shared-GPU groups (kai/_fast/gpusharing.pxd), the session's own copies
        self.dev_used = t.dev_used.copy()
        self.dev_alloc = t.dev_alloc.copy()
        self.dev_rel = t.dev_rel.copy()
        self.dev_from_rel = t.dev_from_rel.copy()
        self.group_names: dict[int, dict[int, str]] = {i: dict(v) for i, v in t.group_names.items() if v}
        self.name_rank = t.name_rank
        #: the arrays above, checked once, as every kernel takes them (kai._fast.placement)
        self.arrays = NodeArrays(self.allocatable, self.idle, self.releasing, self.avail, self.gpu_capacity,
                                 self.name_rank, self.dev_used, self.dev_alloc, self.dev_rel, self.dev_from_rel,
                                 GPU)
        self.node_infos = t.infos
        if state.dra is not None:
            # DRA pods' quota GPUs (kai.cache.dra_store), before any plugin reads quota figures
            state.dra.refresh(state, config)
        self.touch_log = TouchLog(self.idle.shape[1])
        self._node_queues: dict[tuple, NodeQueue] = {}
        self.registry = state.registry
        self.jobs: dict[str, PodGroupInfo] = state.jobs
        #: the jobs with a pending pod at open, in ``jobs`` order (the cluster state's pending
        #: index: costs what changed, not every job). Within the session no other job gains a
        #: pending pod: evictions make running pods Releasing, and only a pod pipelined in this
        #: session -- pending at open -- goes back to Pending.
        self.pending_jobs: list[PodGroupInfo] = state.pending_jobs()
        #: keys of the jobs whose pods this session changed (virtually or committed): every
        #: Statement operation and undo fires the handlers below, which record the job here
        self.touched_jobs: set[str] = set()
        #: how many allocate/deallocate/pipeline events fired so far: state that moves only
        #: with them (the queue order's allocated vectors) can be cached while it stands still
        self.alloc_events = 0
        #: the queue of each of those events' jobs, in order (None: a task without a job): a
        #: job walk whose queue order is path-local re-asks only the moved queues' paths
        self.event_queues: list[str | None] = []
        self.queues = session_queue_tree(state, config.full_hierarchy_fairness)
        self.pipelined: list[tuple[PodInfo, S, str]] = []
        self.fit_errors: dict[str, list[str]] = {}      # job key -> reasons
        self.results_log: list[tuple[str, str]] = []
        # --- extension points (KAI's names) ---
        self.job_order_keys: list[Callable[[PodGroupInfo], object]] = []
        self.task_order_key: Callable[[PodInfo], object] = default_task_order_key
        self.podset_order_key = None
        self.queue_order_fns: list[Callable] = []
        self.pre_predicate_fns: list[Callable[[PodInfo, PodGroupInfo], str | None]] = []
        #: filter plugins beyond the static node facts (kai.framework.predicate)
        self.node_predicates: list[NodePredicate] = []
        self.node_mask_fns: list[Callable[[PodInfo, PodGroupInfo], np.ndarray | None]] = []
        self.node_order_fns: list[Callable[[PodInfo, PodGroupInfo, np.ndarray], np.ndarray | None]] = []
        #: KAI's SubsetNodesFn: fn(job, subgroup, podsets, tasks, node_set) -> candidate node sets.
        #: ``subgroup`` is a SubGroupNode, ``node_set`` a uint8[N] mask (None = every node).
        #: Returns None (no opinion: keep ``node_set``), a list or iterator of uint8[N] masks
        #: (or (mask, name) pairs) to try in order, or a str (no candidate: the reason).
        #: Chained: each fn splits every set.
        self.subset_nodes_fns: list[Callable] = []
        #: the node set the allocate walk is placing into (uint8[N]; None = every node);
        #: ``node_mask`` applies it, so every placement path honours it
        self.node_set: np.ndarray | None = None
        self.is_job_over_capacity_fns: list[Callable[[PodGroupInfo, list[PodInfo]], str | None]] = []
        #: set by the plugin owning the capacity check when its answer for one pod without GPU
        #: sharing depends only on (queue, preemptible, request) and the queues' allocations:
        #: actions may then ask once per such key while nothing is allocated
        self.capacity_by_request = False
        #: fired on every placement (and on the undo of an eviction); a handler may refuse a
        #: placement by returning a reason, or accept it only as a pipeline (PIPELINE_ONLY); see
        #: ``fire_allocate``. Handlers return None otherwise
        self.allocate_handlers: list[Callable[[PodInfo], str | None]] = []
        self.deallocate_handlers: list[Callable[[PodInfo], None]] = []
        #: fired when an allocated task of the session is turned into a pipeline (gang not ready)
        self.pipeline_handlers: list[Callable[[PodInfo], None]] = []
        self.can_reclaim_fns: list[Callable] = []
        self.reclaim_victim_filter_fns: list[Callable] = []
        self.preempt_victim_filter_fns: list[Callable] = []
        self.reclaim_scenario_validator_fns: list[Callable] = []
        self.preempt_scenario_validator_fns: list[Callable] = []
        # --- published by plugins for others (see the module docstring) ---
        #: queue figures (kai.plugins.proportion); None when proportion is not configured
        self.shares: QueueShares | None = None
        #: places fraction / gpu-memory tasks (kai.plugins.gpusharing, or fgd's); None: not enabled
        self.shared_gpu_allocator: SharedGpuAllocator | None = None
        #: GPU order inside a node for shared groups: 0 none, 1 gpupack, 2 gpuspread
        self.gpu_order = 0
        #: gpusharingorder's node score for a node with a fitting shared group
        self.gpu_sharing_order_score = 0.0
        #: (fraction, gpu-memory MiB) -> float64[N] portion per device on each node (gpusharing's cache)
        self.gpu_portions: dict[tuple[float, int], np.ndarray] = {}
        #: placement strategy per kind ("gpu", "cpu"): kai._fast.placement STRATEGY_* (nodeplacement)
        self.placement = {"gpu": STRATEGY_BINPACK, "cpu": STRATEGY_BINPACK}
        self.plugins: list = []
        #: pods per topology domain, kept current with placements (kai.framework.pod_counts);
        #: created by the first plugin that needs it
        self.pod_counts = None
        #: task uid -> (predicate epoch, node predicates that apply to it); see ``predicates_for``
        self._applying: dict[str, tuple[tuple, tuple]] = {}
        #: (node predicates it was made from, [(applies fn, predicates sharing it)]): see
        #: ``predicates_for``
        self._applies_groups: tuple = ((), [])
        self._req_cols: dict[bytes, np.ndarray] = {}
        #: (id(mask), request bytes, allow_pipeline) -> LoneClass (see ``lone_class``)
        self.lone_classes: dict[tuple, LoneClass] = {}
        #: job key -> (task order key, its tasks_to_allocate) while untouched (see ``job_chunk``)
        self._chunks: dict[str, tuple] = {}
        #: work one action leaves for the next (name -> object); each entry carries its own
        #: validity (e.g. the ``alloc_events`` it was built at; kai.actions.common.shared_walk)
        self.action_memo: dict[str, object] = {}
        #: job key -> job order key (``job_order_key``; opened on first use, after the plugins
        #: registered their key fns)
        self._order_keys: dict | None = None

    # ------------------------------------------------------------------ dispatch helpers
    def job_order_key(self, job: PodGroupInfo) -> tuple:
        """The job's place in job order: each of ``job_order_keys`` (fns of the job alone:
        its spec, its pods and their statuses), then creation time and uid. Remembered across
        sessions for jobs this session has not touched (``CycleMemory.order_keys``)."""
        keys = self._order_keys
        if keys is None:
            keys = self._open_order_keys()
        key = job.key
        got = keys.get(key)
        if got is None or key in self.touched_jobs:
            fns = self.job_order_keys
            if len(fns) == 2:               # the default plugins' two (priority, elastic)
                got = (fns[0](job), fns[1](job), job.creation, job.uid)
            else:
                got = tuple([fn(job) for fn in fns]) + (job.creation, job.uid)
            if key not in self.touched_jobs:
                keys[key] = got
        return got

    def _open_order_keys(self) -> dict:
        """The remembered keys, less those of jobs changed since they were kept (all of them
        when the config or the key fns changed, or the state keeps no change numbers)."""
        state = self.state
        seq = getattr(state, "change_seq", None)
        fns = tuple((getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn)))
                    for fn in self.job_order_keys)
        memo = self.memory.order_keys
        if seq is None:
            self._order_keys = {}
            return self._order_keys
        if (memo is None or memo.state is not state or memo.config is not self.config or memo.fns != fns
                or memo.seq > seq):
            memo = self.memory.order_keys = OrderKeyMemo(state, self.config, fns, seq)
        else:
            for key in state.changed_since(memo.seq):
                memo.keys.pop(key, None)
            memo.seq = seq
        self._order_keys = memo.keys
        return memo.keys

    def queue_compare(self, lq: QueueInfo, rq: QueueInfo, lj: PodGroupInfo | None, rj: PodGroupInfo | None) -> int:
        for fn in self.queue_order_fns:
            r = fn(lq, rq, lj, rj)
            if r:
                return r
        if lq.priority != rq.priority:
            return -1 if lq.priority > rq.priority else 1
        return -1 if (lq.creation, lq.name) < (rq.creation, rq.name) else 1

    def request_columns(self, req: np.ndarray, req_key: bytes) -> np.ndarray:
        """int32 columns where ``req`` (float64[R]; ``req_key`` its bytes) is positive, memoized."""
        got = self._req_cols.get(req_key)
        if got is None:
            got = self._req_cols[req_key] = np.flatnonzero(req > 0).astype(np.int32)
        return got

    def node_queue(self, mask, req, req_cols, score_col, strategy, cpu_only, allow_pipeline,
                   req_key: bytes | None = None) -> NodeQueue:
        """The session's lazy node queue for one task class (created on first use)."""
        key = (id(mask), req.tobytes() if req_key is None else req_key, strategy, cpu_only, allow_pipeline)
        q = self._node_queues.get(key)
        if q is None:
            if len(self._node_queues) >= 256:
                self._node_queues.pop(next(iter(self._node_queues)))
            q = NodeQueue(mask, req, req_cols, score_col, strategy, cpu_only, GPU, allow_pipeline)
            q.mask_ref = mask     # keep the mask alive while its id is a key
            self._node_queues[key] = q
        return q

    def lone_class(self, key: tuple, mask: np.ndarray, req: np.ndarray, req_key: bytes, cpu_only: bool,
                   allow_pipeline: bool) -> "LoneClass":
        """The set-up ``Statement.allocate_one`` shares among tasks of one class (static mask,
        request, pipelining), created on first use; bounded like the node queues."""
        if len(self.lone_classes) >= 256:
            self.lone_classes.pop(next(iter(self.lone_classes)))
        got = self.lone_classes[key] = LoneClass(
            mask, req.copy(), self.request_columns(req, req_key), 0 if cpu_only else GPU,
            self.placement_strategy(cpu_only), cpu_only, Placements(1, self.allocatable.shape[0]))
        return got

    def placement_strategy(self, cpu_only: bool) -> int:
        return self.placement["cpu" if cpu_only else "gpu"]

    def pre_predicate(self, task: PodInfo, job: PodGroupInfo, preds: tuple | None = None) -> str | None:
        """The first pre-filter reason for ``task``, or None. ``preds``: ``predicates_for(task)``
        when the caller has it already (the same tuple; saves the lookup)."""
        for fn in self.pre_predicate_fns:
            msg = fn(task, job)
            if msg:
                return msg
        for p in (self.predicates_for(task) if preds is None else preds):
            msg = p.pre_filter(task, job)
            if msg:
                return msg
        return None

    def predicate_epoch(self) -> tuple:
        """What a predicate's ``applies`` may depend on besides the task itself: the terms that
        pods carry (inter-pod affinity symmetry), in the PodTable and placed in this session."""
        pc = self.pod_counts
        return (pc.terms_version if pc is not None else 0, len(self._carried_terms))

    def predicates_for(self, task: PodInfo) -> tuple[NodePredicate, ...]:
        """The node predicates that apply to ``task`` (memoized per task until the carried
        terms change: one dict lookup on the hot path instead of one call per predicate)."""
        pc = self.pod_counts                    # predicate_epoch, inlined (hot path)
        epoch = (pc.terms_version if pc is not None else 0, len(self._carried_terms))
        got = self._applying.get(task.uid)
        if got is not None and got[0] == epoch:
            return got[1]
        made_from, groups = self._applies_groups
        if made_from != self.node_predicates:
            groups = self._group_applies()
        preds: list = []
        for applies, members in groups:
            if applies(task):
                preds.extend(members)
        preds = tuple(preds)
        self._applying[task.uid] = (epoch, preds)
        return preds

    def _group_applies(self) -> list:
        """Consecutive node predicates that share one ``applies`` (the very same callable, as
        kube-scheduler's four volume filters share the volume session's test), asked once."""
        groups: list = []
        for p in self.node_predicates:
            fn = p.applies
            if groups and groups[-1][0] is fn:
                groups[-1][1].append(p)
            else:
                groups.append((fn, [p]))
        self._applies_groups = (list(self.node_predicates), groups)
        return groups

    def placed_one_at_a_time(self, task: PodInfo) -> bool:
        """True when a predicate's answer for ``task`` moves with every placement (no runs).
        (Asks only the ``per_task`` predicates: the same answer as looking through
        ``predicates_for(task)``, without testing every predicate for every task of a gang.)"""
        for p in self.node_predicates:
            if p.per_task and p.applies(task):
                return True
        return False

    def job_chunk(self, job: PodGroupInfo) -> list[PodInfo]:
        """``job.tasks_to_allocate`` under the session's task and PodSet orders, memoized while
        no operation touched the job (task statuses change only through Statement operations,
        which record the job in ``touched_jobs``, and their commits). A fresh list each call."""
        key = job.key
        if key in self.touched_jobs:
            self._chunks.pop(key, None)
            return job.tasks_to_allocate(self.task_order_key, self.podset_order_key)
        got = self._chunks.get(key)
        if got is None or got[0] is not self.task_order_key:
            got = self._chunks[key] = (self.task_order_key,
                                       job.tasks_to_allocate(self.task_order_key, self.podset_order_key))
        return list(got[1])

    def domain_specs(self, task: PodInfo, job: PodGroupInfo, preds: tuple | None = None) -> tuple[list[dict], bool]:
        """Every predicate's kernel constraint specs for ``task`` and the affinity bootstrap flag."""
        specs: list[dict] = []
        boot = False
        for p in (self.predicates_for(task) if preds is None else preds):
            got = p.domain_constraints(task, job)
            if got:
                specs.extend(got[0])
                boot = boot or got[1]
        return specs, boot

    def domain_constraints(self, task: PodInfo, job: PodGroupInfo,
                           preds: tuple | None = None) -> DomainConstraints | None:
        """The topology-domain constraints of ``task`` for the placement kernel (inter-pod
        affinity, spread, host ports), or None when no predicate adds any."""
        if preds is not None and not preds:
            return None                   # only predicates add constraints
        specs, boot = self.domain_specs(task, job, preds)
        if not specs:
            return None
        return DomainConstraints(self.allocatable.shape[1], specs, boot)

    def run_key(self, task: PodInfo) -> tuple:
        """Tasks with equal run keys (and signature and request) are placed as one run."""
        return tuple(p.run_key(task) for p in self.predicates_for(task))

    def node_mask(self, task: PodInfo, job: PodGroupInfo, preds: tuple | None = None) -> np.ndarray:
        """uint8[N]: static predicates for the task, AND every plugin mask."""
        m = self.state.nodes.static_mask(task.pod, task.signature)
        for p in (self.predicates_for(task) if preds is None else preds):
            extra = p.mask(task, job)
            if extra is not None:
                m = np.ascontiguousarray(m & np.asarray(extra).astype(np.uint8))
        for fn in self.node_mask_fns:
            extra = fn(task, job)
            if extra is not None:
                m = np.ascontiguousarray(m & extra.astype(np.uint8))
        if self.node_set is not None:
            m = np.ascontiguousarray(m & self.node_set)
        return m

    def node_scores(self, task: PodInfo, job: PodGroupInfo, mask: np.ndarray) -> np.ndarray | None:
        total = None
        for fn in self.node_order_fns:
            s = fn(task, job, mask)
            if s is not None:
                total = s.astype(np.float64) if total is None else total + s
        return None if total is None else np.ascontiguousarray(total)

    def subset_nodes(self, job: PodGroupInfo, subgroup, podsets, tasks: list[PodInfo],
                     node_set: np.ndarray | None, reasons: list[str]):
        """Candidate node sets ``(mask, name)`` for a subgroup's tasks, lazily, in the order to
        try; fns that leave no candidate append their reason to ``reasons`` as the iteration
        reaches them. A fn may name its sets by returning ``(mask, name)`` tuples, and may
        return an iterator (sets are then built only when tried); names of chained fns are
        joined with '/'."""
        fns = self.subset_nodes_fns

        def chain(i: int, mask, name: str):
            if i == len(fns):
                yield mask, name
                return
            got = fns[i](job, subgroup, podsets, tasks, mask)
            if got is None:
                yield from chain(i + 1, mask, name)
            elif isinstance(got, str):
                reasons.append(got)
            else:
                for item in got:
                    m, n = item if isinstance(item, tuple) else (item, "")
                    yield from chain(i + 1, m, f"{name}/{n}" if name and n else (n or name))

        return chain(0, node_set, "")

    def is_job_over_capacity(self, job: PodGroupInfo, tasks: list[PodInfo]) -> str | None:
        fns = self.is_job_over_capacity_fns
        return fns[0](job, tasks) if fns else None      # single-answer hook, as in KAI

    def _log_event(self, task: PodInfo) -> None:
        job = self.jobs.get(task.job_key)
        self.event_queues.append(job.queue if job is not None else None)

    def fire_allocate(self, task: PodInfo) -> str | None:
        """Every allocate handler sees the placement. Returns the first reason a handler
        returned (it could not take what the placement needs, e.g. DRA devices): the Statement
        then undoes the placement, firing the deallocate handlers as for any undo (so a
        handler that refused treats that deallocate as a no-op). Else PIPELINE_ONLY if a
        handler answered that (the Statement turns an allocation into a pipeline, or undoes it
        where pipelining is not allowed), else None."""
        self.touched_jobs.add(task.job_key)
        self.alloc_events += 1
        job = self.jobs.get(task.job_key)              # (_log_event, inline: once a placement)
        self.event_queues.append(job.queue if job is not None else None)
        refused = None
        for fn in self.allocate_handlers:
            why = fn(task)
            if why and (refused is None or refused == PIPELINE_ONLY):
                refused = why
        return refused

    def fire_deallocate(self, task: PodInfo) -> None:
        self.touched_jobs.add(task.job_key)
        self.alloc_events += 1
        self._log_event(task)
        for fn in self.deallocate_handlers:
            fn(task)

    def fire_pipelined(self, task: PodInfo) -> None:
        self.touched_jobs.add(task.job_key)
        self.alloc_events += 1
        self._log_event(task)
        for fn in self.pipeline_handlers:
            fn(task)

    def record_fit_error(self, job: PodGroupInfo, reasons: list[str]) -> None:
        """Why ``job`` stays pending; only for a job with a pending pod (the cycle's report
        re-checks only the jobs the session touched)."""
        self.fit_errors[job.key] = reasons

    def sort_tasks(self, tasks: list[PodInfo]) -> list[PodInfo]:
        return sorted(tasks, key=self.task_order_key)

    def queue_cmp_key(self):
        return functools.cmp_to_key(lambda a, b: self.queue_compare(a[0], b[0], a[1], b[1]))

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        for p in self.plugins:
            p.on_session_close(self)
        for task, status, node in self.pipelined:
            if task.status == S.PIPELINED:
                task.status = status
                task.node_name = node
        self.pipelined.clear()
        # forget the remembered order keys of the jobs this session touched: most changed (the
        # next session would drop them), the rest are made again when asked. Their tuples go by
        # reference counting now instead of waiting in the cyclic collector's first pass
        keys = self._order_keys
        if keys:
            for key in self.touched_jobs:
                keys.pop(key, None)
        # The session sits in reference cycles (plugins' hooks close over it), so what only it
        # holds would wait for the cyclic collector: let go of the per-task and per-job memos
        # now (tens of thousands of small containers at scale), reference counting frees them
        for memo in (self._applying, self._chunks, self.lone_classes, self._node_queues, self.action_memo,
                     self._req_cols):
            memo.clear()
        for name in _HOOKS:
            getattr(self, name).clear()
        self.plugins = []
        self.shares = self.shared_gpu_allocator = self.pod_counts = self.podset_order_key = None
