"""ClusterState: the scheduler's incrementally maintained model of the cluster.

Fed one object at a time (informer events in the live controller, manifests in
``kai simulate``): nodes into the NodeTable, pods into PodInfos charged against their
node's columns, PodGroups into PodGroupInfos (jobs), plus Queues, PriorityClasses and
Topologies; storage objects and ConfigMap names go to ``storage`` (kai.cache.storage_store).
No rebuild per cycle: ``open_view()`` hands a session copies of the small node arrays and
the live job objects; whatever the session changes virtually is undone
at close, and committed decisions come back through ``assume_bound`` / ``assume_evicted``
(within a scheduling action, plain bindings are filed together: ``assuming``).
"""
from __future__ import annotations

import gc
from bisect import bisect_left
from collections import defaultdict
from contextlib import contextmanager
from operator import itemgetter

import numpy as np

from kai.api import constants as C
from kai.api.alike_key import alike_key
from kai.api.k8s import Node, Pod, PodGroup, PriorityClass, Queue, Topology
from kai.api.pod_info import PodInfo
from kai.api.podgroup_info import PodGroupInfo, subgroup_tree_error
from kai.api.resources import ResourceRegistry
from kai._fast.gpusharing import KIND_ALLOCATED, KIND_RELEASING, update_group as _update_group
from kai._fast.nodearrays import charge as _charge_kernel, charge_rows as _charge_rows
from kai.api.resources import GPU
from kai.cache.node_table import NodeTable
from kai.cache.pod_table import PodTable
from kai.cache.storage_store import StorageStore

S = C.PodStatus
_first = itemgetter(0)
_edit_order = itemgetter(0, 1, 2)


def resolve_priority(pc_name: str, classes: dict[str, PriorityClass]) -> int:
    """PriorityClass name -> value; unknown or empty -> the globalDefault class, else 50."""
    if pc_name:
        pc = classes.get(pc_name)
        if pc is not None:
            return pc.value
        if pc_name in C.PRIORITY_CLASSES:
            return C.PRIORITY_CLASSES[pc_name]
    for pc in classes.values():
        if pc.global_default:
            return pc.value
    return C.DEFAULT_PRIORITY


def resolve_preemptible(pg: PodGroup, priority: int) -> bool:
    explicit = pg.spec.preemptibility or pg.metadata.labels.get(C.PREEMPTIBILITY_LABEL, "")
    if explicit == C.PREEMPTIBLE:
        return True
    if explicit == C.NON_PREEMPTIBLE:
        return False
    return priority < C.PREEMPTIBLE_BELOW


def shared_portion(pod: PodInfo, info) -> float:
    """A fraction pod's portion per device on a node (gpu-memory over the node's device memory, <= 1)."""
    gs = pod.gpu_sharing
    if gs.portion:
        return gs.portion
    return min(gs.memory_mib / max(info.gpu_memory_mib, 1), 1.0)


def _label_groups(pod: PodInfo, devices: int) -> list[str]:
    """Shared-GPU group ids a bound fraction pod carries in its labels (KAI's binder sets them)."""
    labels = pod.pod.metadata.labels
    if not labels:
        return []
    prefix = C.GPU_GROUP_LABEL + "/"
    per_device = sorted(k[len(prefix):] for k in labels if k.startswith(prefix))
    if per_device:
        return per_device
    v = labels.get(C.GPU_GROUP_LABEL, "")
    if not v:
        return []
    if devices > 1 and len(v.split("_")) == devices:
        return v.split("_")
    return [v]


class _Assumed:
    """The pods an ``assuming`` batch bound, in order, with what filing them needs."""
    __slots__ = ("uids", "pods", "cols", "rids", "distinct", "jobs", "direct")

    def __init__(self) -> None:
        #: True once the pod table was handed out during the batch: binds go one by one
        self.direct = False
        self.uids: set[str] = set()
        self.pods: list[PodInfo] = []
        self.cols: list[int] = []              # their node columns
        self.rids: list[int] = []              # their requests' rows in ``distinct``
        #: id(request array) -> (row, the array): pods share a few request arrays
        self.distinct: dict[int, tuple[int, np.ndarray]] = {}
        self.jobs: dict[str, None] = {}        # their jobs, in the order of their last change

    def __len__(self) -> int:
        return len(self.pods)

    def add(self, task: PodInfo, col: int) -> None:
        self.uids.add(task.uid)
        self.pods.append(task)
        self.cols.append(col)
        req = task.req
        got = self.distinct.get(id(req))
        if got is None:                        # (the entry keeps the array alive: ids stay unique)
            got = self.distinct[id(req)] = (len(self.distinct), req)
        self.rids.append(got[0])
        jobs = self.jobs
        key = task.job_key
        jobs.pop(key, None)
        jobs[key] = None


class ClusterState:
    """Nodes, pods, jobs and queues, with node resources charged incrementally."""

    def __init__(self, scheduler_name: str = C.SCHEDULER_NAME, grouper=None) -> None:
        self.scheduler_name = scheduler_name
        self.registry = ResourceRegistry()
        self.nodes = NodeTable(self.registry)
        self.pods: dict[str, PodInfo] = {}
        #: pods on nodes as rows, for inter-pod affinity / spread / ports (kai.cache.pod_table);
        #: read from outside through ``pod_table``
        self._pod_table = PodTable()
        #: namespace name -> labels (namespaceSelector of pod affinity terms)
        self.namespaces: dict[str, dict[str, str]] = {}
        self.podgroups: dict[str, PodGroup] = {}
        self.jobs: dict[str, PodGroupInfo] = {}
        self.queues: dict[str, Queue] = {}
        self.priority_classes: dict[str, PriorityClass] = {}
        self.topologies: dict[str, Topology] = {}
        #: PVs, PVCs, StorageClasses, CSI objects, ConfigMap names; assumed volume bindings
        self.storage = StorageStore()
        self.grouper = grouper            # callable(Pod) -> PodGroup | None, for ungrouped pods
        # node name -> uids of the pods naming it (a dict as an ordered set: a third of a set's size)
        self._node_pods: dict[str, dict[str, None]] = defaultdict(dict)
        # a pod is charged to a node exactly when it has a ``pod_table`` row (its node column);
        # the request charged is its PodInfo's ``req``; uids charged as releasing:
        self._charged_releasing: set[str] = set()
        self._shared: dict[str, tuple[int, list[tuple[int, float]], int]] = {}  # uid -> (idx, [(slot, portion)], kind)
        self._waiting: dict[str, set[str]] = defaultdict(set)   # podgroup key -> pod uids
        self._waiting_key: dict[str, str] = {}                  # pod uid -> podgroup key it waits for
        self.pod_problems: dict[str, str] = {}                  # pod key -> why it is not scheduled
        self._bulk: tuple | None = None
        self._bulk_touched: dict[str, None] | None = None     # jobs changed during a bulk load
        #: inside ``assuming()``: the pods ``assume_bound`` took whose node charge, pod-table
        #: row and job change are still to be filed (``_file_assumed``)
        self._assumed: _Assumed | None = None
        # job key -> time its pods were last pipelined onto resources being freed for it
        self.nominated: dict[str, float] = {}
        # PodGroup keys whose pods or spec changed since the status writer last looked
        self.dirty_jobs: set[str] = set()
        #: job key -> change number of its last change (pods joined, left, bound, evicted, spec);
        #: lets per-job figures be kept from one cycle to the next (see ``changed_since``)
        self.job_seq: dict[str, int] = {}
        self._seq = 0
        self.job_seq_epoch = 0
        #: keys of jobs that may have a pending pod: every job changed since it was last found
        #: without one (a superset; ``pending_jobs`` prunes it)
        self._maybe_pending: dict[str, None] = {}
        #: the last ``pending_jobs`` answer: (change number, job_seq_epoch, the jobs' positions,
        #: the jobs)
        self._pending_answer: tuple[int, int, list, list] | None = None
        #: job key -> position, for the jobs in the last ``pending_jobs`` answer
        self._pending_pos: dict[str, int] = {}
        self._job_ord: dict[str, int] = {}          # job key -> position in ``jobs`` (insertion order)
        self._ord_seq = 0
        #: DRA objects and device use (kai.cache.dra_store.DraStore); None: no DRA in this cluster model
        self.dra = None
        self.claim_pods: set[str] = set()                       # uids of pods with spec.resourceClaims
        #: queue -> historical usage [gpu, cpu, memory], normalised to cluster capacity (KAI's
        #: ClusterInfo.QueueResourceUsage); set before each cycle from kai.cache.usage_db
        self.queue_resource_usage: dict[str, tuple[float, float, float]] = {}

    # ------------------------------------------------------------------ job changes
    @property
    def pod_table(self) -> PodTable:
        """The pods on nodes as rows (kai.cache.pod_table). Inside ``assuming()`` the batch is
        filed first, and the rest of the batch binds one by one: the reader may keep the
        table and read it again after later bindings."""
        batch = self._assumed
        if batch is not None:
            if batch:
                self._file_assumed()
            self._assumed.direct = True
        return self._pod_table

    @property
    def carried_terms(self) -> dict:
        """The PodTable's carried (anti-)affinity terms (``PodTable.terms``, one dict changed in
        place), current inside ``assuming()`` too: a pod with constraints is never left for
        the batch."""
        return self._pod_table.terms

    def _touch(self, key: str) -> None:
        """A job's pods or spec changed: the status writer, the per-job caches and the pending
        index must look at it again. During a bulk load only the order of the jobs' last
        changes is kept, and applied at its end (one change number per job, not per pod)."""
        touched = self._bulk_touched
        if touched is not None:
            touched.pop(key, None)
            touched[key] = None
            return
        if self._assumed:
            self._file_assumed()
        self.dirty_jobs.add(key)
        self._seq += 1
        self.job_seq.pop(key, None)             # kept in change order (see ``changed_since``)
        self.job_seq[key] = self._seq
        self._maybe_pending[key] = None
        if len(self.job_seq) > 2 * len(self.jobs) + 1024:
            self._renumber()

    def _renumber(self) -> None:
        # deleted jobs' entries: drop them; readers of ``changed_since`` see the new
        # ``job_seq_epoch`` and start over from every job
        self.job_seq = {k: v for k, v in self.job_seq.items() if k in self.jobs}
        # and from the status writer's dirty set, which no one drains on a standby replica
        # (a deleted PodGroup has no status to write)
        gone = [k for k in self.dirty_jobs if k not in self.jobs and k not in self.podgroups]
        self.dirty_jobs.difference_update(gone)
        self._job_ord = {k: i for i, k in enumerate(self.jobs, 1)}
        self._ord_seq = len(self._job_ord)
        self.job_seq_epoch += 1

    def _touch_many(self, keys) -> None:
        """``_touch`` of each key in order (outside a bulk load)."""
        if self._assumed:
            self._file_assumed()
        dirty, job_seq, maybe = self.dirty_jobs, self.job_seq, self._maybe_pending
        seq = self._seq
        for key in keys:
            seq += 1
            job_seq.pop(key, None)
            job_seq[key] = seq
            maybe[key] = None
        dirty.update(keys)
        self._seq = seq
        if len(job_seq) > 2 * len(self.jobs) + 1024:
            self._renumber()

    def job_changed(self, key: str) -> None:
        """Something a job's figures are made of changed outside the pod and PodGroup events
        (e.g. the GPUs its DRA claims count for): per-job caches must look at it again."""
        self._touch(key)

    @property
    def change_seq(self) -> int:
        """The number of the latest job change."""
        if self._assumed:
            self._file_assumed()
        return self._seq

    def changed_since(self, seq: int) -> list[str]:
        """Keys of the jobs changed (created, deleted, pods or spec changed) after change
        number ``seq``, latest first; costs the changes, not the jobs."""
        if self._assumed:
            self._file_assumed()
        out = []
        for key in reversed(self.job_seq):
            if self.job_seq[key] <= seq:
                break
            out.append(key)
        return out

    def job_position(self, key: str) -> int | None:
        """The job's position in ``jobs`` order (increasing with insertion), None when gone."""
        return self._job_ord.get(key)

    def pending_jobs(self) -> list[PodGroupInfo]:
        """Jobs with a pending pod now, in ``jobs`` order. Costs the jobs changed since the
        last call, not every job: a job gains or loses its pending pods only through a change
        (``_touch``), so the last answer is kept and only the jobs changed since are looked at
        again (every job that may have one when the job positions were renumbered, the last
        answer is older than the change numbers kept, or more than a quarter of it changed). Call
        it only outside a session's virtual changes (a session calls it when it opens). The
        answer is a copy."""
        if self._assumed:
            self._file_assumed()
        last = self._pending_answer
        seq = self._seq
        if last is not None and last[0] == seq:
            return list(last[3])
        jobs, order = self.jobs, self._job_ord
        changed = self.changed_since(last[0]) if last is not None and last[1] == self.job_seq_epoch else None
        if changed is not None and len(changed) * 4 <= len(last[3]) + 64:
            positions, out = self._edit_pending(changed, last[2], last[3])
        else:
            keep = []
            gone = []
            for key in self._maybe_pending:
                job = jobs.get(key)
                if job is None or not job.has_pending():
                    gone.append(key)
                else:
                    keep.append((order[key], job))
            for key in gone:
                del self._maybe_pending[key]
            keep.sort(key=_first)
            positions = [pos for pos, _ in keep]
            out = [job for _, job in keep]
            self._pending_pos = {job.key: pos for pos, job in keep}
        self._pending_answer = (seq, self.job_seq_epoch, positions, out)
        return list(out)

    def _edit_pending(self, changed: list[str], positions: list[int], out: list) -> tuple[list, list]:
        """The last ``pending_jobs`` answer (``positions``, ``out``, sorted by position) with
        the ``changed`` jobs taken out and those that have a pending pod put back in place:
        slices of the old lists between the edits, not a walk over them."""
        jobs, order, members = self.jobs, self._job_ord, self._pending_pos
        edits = []                       # (index in the old lists, 0 insert / 1 remove, position, job)
        for key in set(changed):
            old = members.pop(key, None)
            if old is not None:
                edits.append((bisect_left(positions, old), 1, old, None))
            job = jobs.get(key)
            if job is not None and job.has_pending():
                pos = members[key] = order[key]
                edits.append((bisect_left(positions, pos), 0, pos, job))
            else:
                self._maybe_pending.pop(key, None)
        if not edits:
            return positions, out
        edits.sort(key=_edit_order)      # (at one index, either order gives the same lists)
        new_pos: list[int] = []
        new_out: list = []
        at = 0                           # next old element not yet copied
        for i, kind, pos, job in edits:
            if i > at:
                new_pos += positions[at:i]
                new_out += out[at:i]
                at = i
            if kind:
                at = i + 1               # the old element i is left out
            else:
                new_pos.append(pos)
                new_out.append(job)
        new_pos += positions[at:]
        new_out += out[at:]
        return new_pos, new_out

    def load(self, nodes=(), podgroups=(), pods=(), queues=(), priority_classes=(), freeze: bool = False) -> None:
        """Bulk initial load (the informers' first list): nodes first, charges applied in one pass.

        The cyclic garbage collector is paused meanwhile: the load creates only acyclic
        objects, and full collections over a heap that grows by 10^5 objects would
        otherwise dominate the time.

        ``freeze``: move every object the process tracks now into the collector's permanent
        generation afterwards (``gc.freeze``), so that later collections never walk the
        listed state again. That is the process's choice, made once at start-up (the
        controller's first sync): frozen objects are never collected as cycles, so a process
        that loads states again and again (``kai status --watch``, tests) must not freeze,
        or each load would keep the garbage of the one before for good.
        """
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._load(nodes, podgroups, pods, queues, priority_classes)
        finally:
            if gc_was_enabled:
                gc.enable()
            if freeze:
                gc.freeze()

    def _load(self, nodes, podgroups, pods, queues, priority_classes) -> None:
        for pc in priority_classes:
            self.priority_classes[pc.metadata.name] = pc
        for q in queues:
            self.upsert_queue(q)
        self.nodes.upsert_many(list(nodes))
        # charges are collected (node column, request id, releasing) and applied in one kernel
        # call, in the same order as one by one; requests are few distinct shared arrays
        self._bulk = ([], [], [], {})
        self._bulk_touched = {}
        try:
            for pg in podgroups:
                self.upsert_podgroup(pg)
            self._load_pods(pods)
            cols, rids, rel, distinct = self._bulk
            if cols:
                self.nodes.ensure_width()
                table = np.zeros((len(distinct), len(self.registry)))
                for k, req in distinct.values():
                    table[k, : req.shape[0]] = req
                t = self.nodes
                _charge_rows(t.idle, t.releasing, t.avail, np.array(cols, dtype=np.int32), table,
                             np.array(rids, dtype=np.int32), np.array(rel, dtype=np.uint8), 1.0)
        finally:
            self._bulk = None
            touched, self._bulk_touched = self._bulk_touched, None
            for key in touched:
                self._touch(key)

    def _load_pods(self, pods) -> None:
        """The pods of a bulk load: the state ``upsert_pod`` one pod after another leaves, in
        one pass that builds each pod's PodInfo and files it while its objects are in cache,
        with the rest of the bookkeeping in bulk (pod-table rows in one go, node charges into
        the load's kernel call, job membership and job changes once per run of consecutive
        pods of one job). Taken while the state has no pods and no pod-grouper; from the first
        pod whose uid is already known, what was gathered is filed and the rest go one by one
        (``_add_pod``), as does a pod whose PodGroup does not exist yet."""
        registry = self.registry
        it = iter(pods)
        if self.pods or self._pod_table.row_of or self.grouper is not None:
            for pod in it:
                self._add_pod(PodInfo(pod, registry))
            return
        sched = self.scheduler_name
        by_name = self.nodes.by_name
        node_pods = self._node_pods
        all_pods = self.pods
        jobs = self.jobs
        touched = self._bulk_touched
        b_cols, b_rids, b_rel, distinct = self._bulk
        rows: list[PodInfo] = []                 # pods charged to a node (pod-table rows), in order
        cols: list[int] = []                     # their node columns
        shared: list[tuple[PodInfo, object]] = []  # fraction pods among them, with their NodeInfo
        pg_annotation = C.POD_GROUP_ANNOTATION
        on_node, releasing_flag, pending = C.ON_NODE, S.RELEASING, S.PENDING
        run: list[PodInfo] = []                  # consecutive pods of ``run_job``
        run_job = None
        run_ns = run_name = None
        last_node, last_info, last_on = None, None, None       # pods of a node come together
        last_req, last_rid = None, 0
        again = None                             # a pod seen before: it and the rest one by one
        for pod in it:
            p = PodInfo(pod, registry)
            uid = p.uid
            if all_pods.setdefault(uid, p) is not p:         # filed here, unless seen before
                again = p
                break
            spec = pod.spec
            ours = spec.scheduler_name == sched
            node = p.node_name
            status = p.status
            occupies = node and status & on_node       # (truthy as upsert_pod's bool)
            if not ours and not occupies:
                del all_pods[uid]                 # not ours to track (as upsert_pod)
                continue
            if spec.resource_claims:
                self.claim_pods.add(uid)
            if node:
                if node != last_node:
                    last_node, last_info, last_on = node, by_name.get(node), node_pods[node]
                last_on[uid] = None
                if occupies and last_info is not None:
                    rows.append(p)
                    cols.append(last_info.idx)
                    req = p.req
                    if req is not last_req:
                        got = distinct.get(id(req))
                        if got is None:         # (the entry keeps the array alive: ids stay unique)
                            got = distinct[id(req)] = (len(distinct), req)
                        last_req, last_rid = req, got[0]
                    b_rids.append(last_rid)
                    releasing = bool(status & releasing_flag)
                    b_rel.append(releasing)
                    if releasing:
                        self._charged_releasing.add(uid)
                    if p.gpu_sharing is not None and not p.invalid_reason:
                        shared.append((p, last_info))
            if not ours:
                continue
            if not node and status == pending:
                alike_key(p)                    # (made here, where the pod is still in cache)
            pg_name = pod.metadata.annotations.get(pg_annotation)
            if not pg_name:
                self._attach(p)
                continue
            if pg_name != run_name or p.namespace != run_ns:
                if run:
                    run_job.add_tasks(run)
                    touched.pop(run_job.key, None)
                    touched[run_job.key] = None
                    run.clear()                 # (add_tasks keeps no reference to it)
                run_ns, run_name = p.namespace, pg_name
                run_job = jobs.get(f"{run_ns}/{pg_name}")
            if run_job is None:
                self._attach(p)                 # waits for its PodGroup
                continue
            run.append(p)
            if p.invalid_reason:
                run_job.invalid_reasons.append(p.invalid_reason)
        if run:
            run_job.add_tasks(run)
            touched.pop(run_job.key, None)
            touched[run_job.key] = None
        b_cols.extend(cols)
        self._pod_table.add_many(rows, cols)
        for p, info in shared:
            self._charge_shared(p, info, bool(p.status & releasing_flag))
        if again is not None:
            self._add_pod(again)
            for pod in it:
                self._add_pod(PodInfo(pod, registry))

    # ------------------------------------------------------------------ nodes
    def upsert_node(self, node: Node) -> None:
        if self._assumed:
            self._file_assumed()
        is_new = node.metadata.name not in self.nodes.by_name
        self.nodes.upsert(node)
        if is_new:
            for uid in list(self._node_pods.get(node.metadata.name, {})):
                pod = self.pods.get(uid)
                if pod is not None and self._pod_table.node_of(uid) is None:
                    self._charge(pod)

    def delete_node(self, name: str) -> None:
        if self._assumed:
            self._file_assumed()
        info = self.nodes.remove(name)
        if info is None:
            return
        on = self._node_pods.get(name)
        for uid in on or ():
            self._charged_releasing.discard(uid)
            self._shared.pop(uid, None)
        if not on:
            self._node_pods.pop(name, None)     # (kept while pods name it: they may come back with it)
        self._pod_table.remove_node(info.idx)

    def _off_node(self, node: str, uid: str) -> None:
        """Take ``uid`` off ``node``'s pod list; the list of a node that is gone goes with its
        last pod (names of deleted nodes must not pile up in a cluster that scales)."""
        on = self._node_pods.get(node)
        if on is not None:
            on.pop(uid, None)
            if not on and node not in self.nodes.by_name:
                del self._node_pods[node]

    # ------------------------------------------------------------------ pods
    def _charge(self, pod: PodInfo) -> None:
        if self._assumed:
            self._file_assumed()
        info = self.nodes.by_name.get(pod.node_name)
        if info is None:
            return
        releasing = bool(pod.status & S.RELEASING)
        i = info.idx
        if self._bulk is not None:
            cols, rids, rel, distinct = self._bulk
            req = pod.req
            got = distinct.get(id(req))
            if got is None:                 # (the entry keeps the array alive: ids stay unique)
                got = distinct[id(req)] = (len(distinct), req)
            cols.append(i)
            rids.append(got[0])
            rel.append(releasing)
        else:
            t = self.nodes
            width = len(self.registry)
            if t.allocatable.shape[0] < width:          # ``ensure_width``'s test, inlined
                t.ensure_width()
            req = pod.req
            if req.shape[0] < width:
                req = pod.req_vec(width)
            _charge_kernel(t.idle, t.releasing, t.avail, i, req, 1.0, releasing)
        if releasing:
            self._charged_releasing.add(pod.uid)
        self._pod_table.add(pod, i)
        if pod.gpu_sharing is not None and not pod.invalid_reason:
            self._charge_shared(pod, info, releasing)

    def _charge_shared(self, pod: PodInfo, info, releasing: bool) -> None:
        """Charge a fraction pod on a node to its shared-GPU groups (see kai/_fast/gpusharing.pxd).

        Groups come from ``pod.gpu_groups`` (set by the scheduler when it placed the pod), else
        from the labels ``runai-gpu-group/<group>`` (multi-fraction) or ``runai-gpu-group``;
        without any, the pod is packed first-fit onto groups of its node (deterministic ids).
        """
        t = self.nodes
        gs = pod.gpu_sharing
        i = info.idx
        portion = shared_portion(pod, info)
        names = list(pod.gpu_groups) or _label_groups(pod, gs.num_devices)
        slots: list[int] = []
        node_names = t.group_names.setdefault(i, {})
        by_name = {v: k for k, v in node_names.items()}
        for k in range(gs.num_devices):
            name = names[k] if k < len(names) else ""
            slot = by_name.get(name, -1) if name else -1
            if slot < 0 and not name:
                for d in range(t.dev_used.shape[1]):
                    if d not in slots and t.dev_used[i, d] > 1e-9 and t.dev_alloc[i, d] + portion <= 1 + 1e-9:
                        slot = d
                        break
            if slot < 0:
                slot = self._free_slot(i, slots)
                if not name:
                    name = t.new_group_id(info.name, slot)
                node_names[slot] = name
                by_name[name] = slot
            slots.append(slot)
        kind = KIND_RELEASING if releasing else KIND_ALLOCATED
        for slot in slots:
            _update_group(t.idle, t.releasing, t.avail, t.dev_used, t.dev_alloc, t.dev_rel, t.dev_from_rel,
                          i, slot, portion, kind, 1.0, False, GPU)
        pod.gpu_groups = [node_names[s] for s in slots]
        self._shared[pod.uid] = (i, [(s, portion) for s in slots], kind)

    def _free_slot(self, i: int, taken: list[int]) -> int:
        t = self.nodes
        names = t.group_names.get(i, {})
        for d in range(t.dev_used.shape[1]):
            if d not in taken and t.dev_used[i, d] <= 1e-9 and d not in names:
                return d
        t.ensure_devices(t.dev_used.shape[1] + 1)       # more groups than devices: over-committed node
        return t.dev_used.shape[1] - 1

    def _uncharge_shared(self, uid: str) -> None:
        got = self._shared.pop(uid, None)
        if got is None:
            return
        i, slots, kind = got
        t = self.nodes
        names = t.group_names.get(i, {})
        for slot, portion in slots:
            _update_group(t.idle, t.releasing, t.avail, t.dev_used, t.dev_alloc, t.dev_rel, t.dev_from_rel,
                          i, slot, portion, kind, -1.0, False, GPU)
            if t.dev_used[i, slot] == 0.0:
                names.pop(slot, None)

    def _uncharge(self, pod: PodInfo) -> None:
        """Undo ``_charge``: the pod's ``req`` (only ever padded since) off the column it was
        charged to, as idle or releasing as it was charged."""
        if self._assumed:
            self._file_assumed()
        uid = pod.uid
        i = self._pod_table.node_of(uid)
        self._pod_table.remove(uid)
        self._uncharge_shared(uid)
        if i is None:
            return
        releasing = uid in self._charged_releasing
        if releasing:
            self._charged_releasing.discard(uid)
        req = pod.req
        t = self.nodes
        t.ensure_width()
        if req.shape[0] < t.idle.shape[0]:
            req = np.concatenate([req, np.zeros(t.idle.shape[0] - req.shape[0])])
        _charge_kernel(t.idle, t.releasing, t.avail, i, req, -1.0, releasing)

    def _occupies_node(self, p: PodInfo) -> bool:
        return bool(p.node_name) and bool(p.status & C.ON_NODE)

    def upsert_pod(self, pod: Pod) -> PodInfo | None:
        return self._add_pod(PodInfo(pod, self.registry))

    def _add_pod(self, p: PodInfo) -> PodInfo | None:
        """``upsert_pod`` with the pod's PodInfo already built."""
        pod = p.pod
        if p.uid in self.pods:
            self.delete_pod(p.uid, keep_waiting=True)
        ours = pod.spec.scheduler_name == self.scheduler_name
        occupies = bool(p.node_name) and bool(p.status & C.ON_NODE)        # as _occupies_node
        if not ours and not occupies:
            return None
        self.pods[p.uid] = p
        if pod.spec.resource_claims:
            self.claim_pods.add(p.uid)
        if p.node_name:
            self._node_pods[p.node_name][p.uid] = None
            if occupies:
                self._charge(p)
        if ours:
            if not p.node_name and p.status == S.PENDING:
                alike_key(p)        # a cycle only reads it (kai.api.alike_key)
            self._attach(p)
        return p

    def delete_pod(self, uid: str, keep_waiting: bool = False) -> None:
        p = self.pods.pop(uid, None)
        if p is None:
            return
        self.claim_pods.discard(uid)
        self._uncharge(p)
        if p.node_name:
            self._off_node(p.node_name, uid)
        if p.job_key:
            self._touch(p.job_key)
            job = self.jobs.get(p.job_key)
            if job is not None:
                job.remove_task(uid)
        key = self._waiting_key.pop(uid, None)
        if key is not None:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(uid)
                if not waiting:
                    del self._waiting[key]
        self.pod_problems.pop(p.key, None)

    def _attach(self, p: PodInfo) -> None:
        ann = p.pod.metadata.annotations
        pg_name = ann.get(C.POD_GROUP_ANNOTATION)
        if not pg_name and self.grouper is not None:
            pg = self.grouper(p.pod)
            if pg is not None:
                key = f"{pg.metadata.namespace}/{pg.metadata.name}"
                if key not in self.podgroups:
                    self.upsert_podgroup(pg)
                pg_name = pg.metadata.name
        if not pg_name:
            self.pod_problems[p.key] = f"pod {p.key} has no {C.POD_GROUP_ANNOTATION} annotation yet"
            return
        key = f"{p.namespace}/{pg_name}"
        job = self.jobs.get(key)
        if job is None:
            self._waiting[key].add(p.uid)
            self._waiting_key[p.uid] = key
            self.pod_problems[p.key] = f"PodGroup {key} does not exist"
            return
        job.add_task(p)
        self._touch(key)
        if p.invalid_reason:
            job.invalid_reasons.append(p.invalid_reason)

    # ------------------------------------------------------------------ pod groups
    def upsert_podgroup(self, pg: PodGroup) -> None:
        spec = pg.spec
        priority = resolve_priority(spec.priority_class_name, self.priority_classes)
        job = PodGroupInfo(pg, priority, resolve_preemptible(pg, priority))
        key = job.key                           # namespace (or "default") / name
        self.podgroups[key] = pg
        self._touch(key)
        old = self.jobs.get(key)
        if old is None:
            self._ord_seq += 1
            self._job_ord[key] = self._ord_seq
        self.jobs[key] = job
        waiting = self._waiting.pop(key, None)
        if waiting or old is not None:
            uids = set(waiting or ())
            for uid in uids:
                self._waiting_key.pop(uid, None)
            if old is not None:
                uids.update(old.tasks)
            for uid in uids:
                p = self.pods.get(uid)
                if p is not None:
                    job.add_task(p)
                    self.pod_problems.pop(p.key, None)
                    if p.invalid_reason:
                        job.invalid_reasons.append(p.invalid_reason)
        if spec.min_member < 1:
            job.invalid_reasons.append(f"PodGroup {key}: spec.minMember {spec.min_member} must be >= 1")
        if spec.sub_groups:
            # KAI's PodGroup webhook rule; without the webhook such a PodGroup waits with it
            err = subgroup_tree_error((sg.name, sg.parent) for sg in pg.spec.sub_groups)
            if err:
                job.invalid_reasons.append(f"PodGroup {key}: spec.subGroups: {err}")

    def delete_podgroup(self, key: str) -> None:
        self.podgroups.pop(key, None)
        job = self.jobs.pop(key, None)
        self._job_ord.pop(key, None)
        self._touch(key)                        # its figures go away with it
        if job is not None and job.tasks:
            self._waiting[key].update(job.tasks)
            for t in job.tasks.values():
                t.job_key = ""
                self._waiting_key[t.uid] = key

    # ------------------------------------------------------------------ the rest
    def upsert_queue(self, q: Queue) -> None:
        self.queues[q.metadata.name] = q

    def delete_queue(self, name: str) -> None:
        self.queues.pop(name, None)

    def upsert_priority_class(self, pc: PriorityClass) -> None:
        self.priority_classes[pc.metadata.name] = pc
        for key, pg in list(self.podgroups.items()):
            self.upsert_podgroup(pg)

    def upsert_namespace(self, name: str, labels: dict[str, str]) -> None:
        self.namespaces[name] = dict(labels)

    def delete_namespace(self, name: str) -> None:
        self.namespaces.pop(name, None)

    def upsert_topology(self, t: Topology) -> None:
        self.topologies[t.metadata.name] = t

    # ------------------------------------------------------------------ commits come back
    def assume_bound(self, task: PodInfo, node_name: str) -> None:
        """The binder accepted ``task`` for ``node_name``: charge it now (KAI's Binding state).

        Inside ``assuming()``, a pod that holds nothing yet (no pod-table row, no shared-GPU
        charge), asks for no shared GPU and states no pod constraints (it carries no terms or
        ports: ``carried_terms`` stays current) gets its status, node and volume / DRA
        assumptions at once, and its node charge, pod-table row and job change when the batch
        is filed."""
        uid = task.uid
        batch = self._assumed
        if batch is not None and not batch.direct and task.gpu_sharing is None and task.constraints is None \
                and uid not in batch.uids and uid not in self._pod_table.row_of and uid not in self._shared:
            info = self.nodes.by_name.get(node_name)
            if info is not None:
                if task.node_name:
                    self._off_node(task.node_name, uid)
                task.node_name = node_name
                task.status = S.BINDING
                self._node_pods[node_name][uid] = None
                batch.add(task, info.idx)
                self._assume_claims(task, node_name)
                return
        if uid in self._pod_table.row_of or uid in self._shared or (batch and uid in batch.uids):
            self._uncharge(task)                # (files the batch first: it may hold the pod)
        if task.node_name:
            self._off_node(task.node_name, task.uid)
        task.node_name = node_name
        task.status = S.BINDING
        self._touch(task.job_key)
        self._node_pods[node_name][task.uid] = None
        self._charge(task)
        self._assume_claims(task, node_name)

    def _assume_claims(self, task: PodInfo, node_name: str) -> None:
        if task.volume_plan:
            self.storage.assume(task.uid, task.volume_plan, node_name)
        if self.dra is not None and task.dra is not None:
            self.dra.assume(task.uid, task.name, task.dra)      # its claims stay taken until the API shows them

    @contextmanager
    def assuming(self):
        """A batch of ``assume_bound`` calls (a scheduling action's commits): the node charges,
        pod-table rows and job changes of the pods bound in it are filed together at its end
        -- one kernel call, the rows in one go, one change per job -- leaving the state as the
        calls one by one would (charges added in the same order). Until then the node arrays
        (``nodes.idle``, ``releasing``, ``avail``), the pod table and the job change record
        lag behind those pods. Every method here that reads or changes them files the batch
        first, and so does handing out ``pod_table``; the node arrays are read directly only
        when a session opens, outside any batch. Nested calls join the outer batch."""
        if self._assumed is not None:
            yield
            return
        self._assumed = _Assumed()
        try:
            yield
        finally:
            try:
                self._file_assumed()
            finally:
                self._assumed = None

    def _file_assumed(self) -> None:
        """Charge, row and touch the batch's pods (see ``assuming``); the batch is empty after."""
        batch = self._assumed
        if not batch:
            return
        self._assumed = _Assumed()
        t = self.nodes
        t.ensure_width()
        table = np.zeros((len(batch.distinct), t.idle.shape[0]))
        for k, req in batch.distinct.values():
            table[k, : req.shape[0]] = req
        cols = batch.cols
        _charge_rows(t.idle, t.releasing, t.avail, np.array(cols, dtype=np.int32), table,
                     np.array(batch.rids, dtype=np.int32), np.zeros(len(cols), dtype=np.uint8), 1.0)
        self._pod_table.add_many(batch.pods, cols)
        self._touch_many(batch.jobs)

    def assume_evicted(self, task: PodInfo) -> None:
        """An eviction was issued: the pod's resources are releasing until it is gone."""
        self._uncharge(task)                    # (files an ``assuming`` batch first)
        task.status = S.RELEASING
        self._touch(task.job_key)
        self._charge(task)
