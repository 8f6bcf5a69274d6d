"""Statement: the virtual operations of one job's scheduling attempt.

Every operation (allocate, pipeline, evict) changes the session's node arrays and task
statuses at once, and records what it overwrote. ``checkpoint()``/``rollback()`` undo back
to a point, ``discard()`` undoes everything -- restoring the arrays bit for bit, since undo
writes back the saved values rather than subtracting -- and ``commit()`` hands the
surviving operations, in order, to the session's cache (bind, pipeline event, evict).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kai._fast import placement as _placement
from kai._fast.placement import Placements
from kai._fast.gpusharing import (KIND_ALLOCATED, KIND_PIPELINED, KIND_RELEASING, WHOLE_RELEASING,
                                  update_group as _update_group)
from kai.api import constants as C
from kai.api.pod_info import PodInfo
from kai.api.resources import GPU
from kai.cache.cluster_state import shared_portion
from kai.framework.predicate import PIPELINE_ONLY

if TYPE_CHECKING:
    from kai.framework.session import Session

S = C.PodStatus
ALLOCATE, PIPELINE, EVICT = "allocate", "pipeline", "evict"


class Op:
    __slots__ = ("kind", "task", "node", "cols", "old", "old_status", "old_node", "action", "preemptor", "dev")

    def __init__(self, kind, task, node, cols, old, old_status, old_node, action="", preemptor="", dev=None):
        self.kind = kind
        self.task = task
        self.node = node            # node column index
        self.cols = cols            # int32 columns touched (None = all)
        self.old = old              # float64[2, R]: idle and releasing columns before the op
        self.old_status = old_status
        self.old_node = old_node
        self.action = action
        self.preemptor = preemptor
        self.dev = dev              # shared GPUs: (node's device rows, group names, task.gpu_groups) before


class Statement:
    """Ordered, undoable operations; owned by one action step of one job."""

    def __init__(self, ssn: "Session") -> None:
        self.ssn = ssn
        self.ops: list[Op] = []

    # ------------------------------------------------------------------ operations
    def allocate_run(self, tasks: list[PodInfo], mask: np.ndarray, extra: np.ndarray | None,
                     allow_pipeline: bool = True, constraints=None) -> int:
        """Place identical tasks (same request and constraints) one by one; returns how many fit.

        One kernel call for the whole run: each task goes to the best node given the ones
        placed before it. Placed tasks become Allocated, or Pipelined when they need
        resources that are still releasing.
        """
        ssn = self.ssn
        if not tasks:
            return 0
        t0 = tasks[0]
        width = ssn.allocatable.shape[0]
        req = t0.req_vec(width)[:width]
        req_key = req.tobytes()
        req_cols = ssn.request_columns(req, req_key)
        out = Placements(len(tasks), width)
        cpu_only = t0.is_cpu_only
        strat = ssn.placement_strategy(cpu_only)
        score_col = 0 if cpu_only else GPU
        placed = 0
        # the lazy node queue answers runs without per-node scores; anti-affinity filters (which
        # only shrink the feasible set as the run places) are checked as nodes come off it
        if extra is None and (constraints is None or constraints.anti_only) and not ssn.node_mask_fns \
                and ssn.use_node_queues and not any(p.per_task for p in ssn.predicates_for(t0)):
            q = ssn.node_queue(mask, req, req_cols, score_col, strat, cpu_only, allow_pipeline, req_key)
            placed = q.place(ssn.touch_log, ssn.arrays, out, constraints)
            if placed < 0:
                placed = 0
            elif placed == len(tasks) or q.exact:
                return self._record(tasks, placed, out, allow_pipeline)
        if placed < len(tasks):
            got = _placement.place(ssn.arrays, mask, extra, req, req_cols, score_col, strat, cpu_only,
                                   allow_pipeline, out, placed, constraints)
            for node in out.nodes[placed:placed + got]:
                ssn.touch_log.mark(int(node))
            placed += got
        return self._record(tasks, placed, out, allow_pipeline)

    def allocate_one(self, task: PodInfo, mask: np.ndarray, extra: np.ndarray | None,
                     allow_pipeline: bool = True, constraints=None, preds: tuple | None = None,
                     kept=None) -> bool:
        """``allocate_run([task], ...)`` for one task (a single-pod job): the same decision,
        with the task class's set-up (request columns, strategy, node queue, output buffer)
        kept in the session's :class:`LoneClass` cache instead of rebuilt per task. ``preds``:
        ``ssn.predicates_for(task)`` when the caller has it. ``kept``: the task's look-alike
        class answer (kai.actions.common.lone_answers.LoneAnswer; its pods share ``mask`` and
        the request), which then holds the class's set-up too."""
        ssn = self.ssn
        lc = kept.classes.get(allow_pipeline) if kept is not None else None
        if lc is None:
            width = ssn.allocatable.shape[0]
            req = task.req_vec(width)
            if req.shape[0] != width:
                req = req[:width]
            req_key = req.tobytes()
            key = (id(mask), req_key, allow_pipeline)
            lc = ssn.lone_classes.get(key)
            if lc is None or lc.mask is not mask:
                lc = ssn.lone_class(key, mask, req, req_key, task.is_cpu_only, allow_pipeline)
            if kept is not None:
                kept.classes[allow_pipeline] = lc
        else:
            req_key = None
        out = lc.out
        placed = -1
        # the lazy node queue as in ``allocate_run`` (same conditions, same queue objects)
        if extra is None and (constraints is None or constraints.anti_only) and not ssn.node_mask_fns \
                and ssn.use_node_queues:
            if preds is None:
                preds = ssn.predicates_for(task)
            if not preds or not any(p.per_task for p in preds):
                q = lc.queue
                if q is None:
                    q = lc.queue = ssn.node_queue(mask, lc.req, lc.req_cols, lc.score_col, lc.strategy,
                                                  lc.cpu_only, allow_pipeline, req_key)
                placed = q.place(ssn.touch_log, ssn.arrays, out, constraints)
                if placed == 0 and not q.exact:
                    placed = -1
        if placed < 0:
            placed = _placement.place(ssn.arrays, mask, extra, lc.req, lc.req_cols, lc.score_col,
                                      lc.strategy, lc.cpu_only, allow_pipeline, out, 0, constraints)
            if placed:
                ssn.touch_log.mark(int(out.nodes[0]))
        if not placed:
            return False
        # ``out`` is the class's buffer, reused by its next task: the op keeps its own undo copy
        node, pipelined, undo = out.take(0)
        if not self._place(task, node, pipelined, undo, allow_pipeline):
            self.rollback(len(self.ops) - 1)
            return False
        return True

    def _place(self, t, node: int, pipelined: bool, undo_row, allow_pipeline: bool) -> bool:
        """Record one task the kernel placed on ``node`` (its op, status, node) and fire the
        allocate handlers. False: a handler refused; the op stays for the caller to undo."""
        ssn = self.ssn
        op = Op(PIPELINE if pipelined else ALLOCATE, t, node, None, undo_row, t.status, t.node_name)
        self.ops.append(op)
        t.status = S.PIPELINED if pipelined else S.ALLOCATED
        t.node_name = ssn.node_infos[node].name
        t.is_virtual = True
        answer = ssn.fire_allocate(t)
        if answer == PIPELINE_ONLY and (pipelined or allow_pipeline):
            if not pipelined:               # it needs what evicted pods still hold: wait for it
                op.kind = PIPELINE
                t.status = S.PIPELINED
                ssn.fire_pipelined(t)
            return True
        return not answer

    def _record(self, tasks, placed, out, allow_pipeline: bool = True) -> int:
        # plain lists (one conversion, not a numpy scalar per task); undo rows stay views
        # of this run's own output
        nodes, pipe, undo = out.nodes[:placed].tolist(), out.pipelined[:placed].tolist(), out.undo
        for i in range(placed):
            if not self._place(tasks[i], nodes[i], pipe[i] != 0, undo[i], allow_pipeline):
                self._refused(out, i, placed)
                return i
        return placed

    def _refused(self, out, i: int, placed: int) -> None:
        """An allocate handler refused the ``i``-th placement of a run: undo it (firing the
        deallocate handlers) and the kernel's later placements of the run (no handler saw
        those), newest first, so the arrays are as before the ``i``-th placement."""
        ssn = self.ssn
        for k in range(placed - 1, i, -1):
            n = int(out.nodes[k])
            old = out.undo[k]
            ssn.idle[:, n] = old[0]
            ssn.releasing[:, n] = old[1]
            ssn.avail[:, n] = old[0] + old[1]
            ssn.touch_log.mark(n)
        self.rollback(len(self.ops) - 1)

    # ------------------------------------------------------------------ shared GPUs
    def _save_dev(self, i: int, task: PodInfo) -> tuple:
        ssn = self.ssn
        rows = (ssn.dev_used[i].copy(), ssn.dev_alloc[i].copy(), ssn.dev_rel[i].copy(), ssn.dev_from_rel[i].copy())
        names = ssn.group_names.get(i)
        return rows, (dict(names) if names is not None else None), list(task.gpu_groups)

    def _restore_dev(self, i: int, task: PodInfo, dev: tuple) -> None:
        ssn = self.ssn
        rows, names, groups = dev
        ssn.dev_used[i], ssn.dev_alloc[i], ssn.dev_rel[i], ssn.dev_from_rel[i] = rows
        if names is None:
            ssn.group_names.pop(i, None)
        else:
            ssn.group_names[i] = names
        task.gpu_groups = groups

    def _group(self, i: int, slot: int, portion: float, kind: int, sign: float, from_rel: bool = False) -> None:
        ssn = self.ssn
        _update_group(ssn.idle, ssn.releasing, ssn.avail, ssn.dev_used, ssn.dev_alloc, ssn.dev_rel,
                      ssn.dev_from_rel, i, slot, portion, kind, sign, from_rel, GPU)
        if sign < 0 and ssn.dev_used[i, slot] == 0.0:
            ssn.group_names.get(i, {}).pop(slot, None)

    def allocate_shared(self, task: PodInfo, node: int, devs, portion: float, pipelined: bool) -> None:
        """Place a fraction / gpu-memory task on ``node``: ``devs`` from ``choose_node`` (an existing
        group's slot, or a new group on a whole idle (-1) or releasing (-2) device). Records an
        op whose undo restores the node's columns, device rows, group ids and the task's groups."""
        ssn = self.ssn
        i = node
        old = np.stack([ssn.idle[:, i].copy(), ssn.releasing[:, i].copy()])
        dev = self._save_dev(i, task)
        req = task.req_vec(ssn.allocatable.shape[0]).copy()
        req[GPU] = 0.0
        if pipelined:
            from_rel = np.minimum(req, np.maximum(ssn.releasing[:, i], 0.0))
            ssn.releasing[:, i] -= from_rel
            ssn.idle[:, i] -= req - from_rel
        else:
            ssn.idle[:, i] -= req
        ssn.avail[:, i] = ssn.idle[:, i] + ssn.releasing[:, i]
        names = ssn.group_names.setdefault(i, {})
        kind = KIND_PIPELINED if pipelined else KIND_ALLOCATED
        groups = []
        chosen: list[int] = []
        for code in devs:
            code = int(code)
            if code >= 0:
                slot = code
            else:
                slot = next(d for d in range(ssn.dev_used.shape[1])
                            if d not in chosen and ssn.dev_used[i, d] <= 1e-9 and d not in names)
                names[slot] = ssn.state.nodes.new_group_id(ssn.node_infos[i].name, slot)
            chosen.append(slot)
            self._group(i, slot, portion, kind, 1.0, code == WHOLE_RELEASING)
            groups.append(names[slot])
        ssn.touch_log.mark(i)
        op = Op(PIPELINE if pipelined else ALLOCATE, task, i, None, old, task.status, task.node_name, dev=dev)
        self.ops.append(op)
        task.gpu_groups = groups
        task.status = S.PIPELINED if pipelined else S.ALLOCATED
        task.node_name = ssn.node_infos[i].name
        task.is_virtual = True
        answer = ssn.fire_allocate(task)
        if answer and not (answer == PIPELINE_ONLY and pipelined):
            # refused (see Session.fire_allocate): undone; the task stays pending, so its gang
            # is found short and the job's attempt fails
            self.rollback(len(self.ops) - 1)

    def _evict_shared(self, task: PodInfo, i: int, was_pipelined: bool) -> None:
        ssn = self.ssn
        info = ssn.node_infos[i]
        portion = shared_portion(task, info)
        by_name = {v: k for k, v in ssn.group_names.get(i, {}).items()}
        for name in task.gpu_groups:
            slot = by_name.get(name)
            if slot is None:
                continue
            if was_pipelined:
                self._group(i, slot, portion, KIND_PIPELINED, -1.0)
            else:
                self._group(i, slot, portion, KIND_ALLOCATED, -1.0)
                self._group(i, slot, portion, KIND_RELEASING, 1.0)
        if was_pipelined:
            task.gpu_groups = []

    def evict(self, task: PodInfo, action: str, preemptor: str = "") -> None:
        """Virtually evict a task on a node: its request becomes releasing there."""
        ssn = self.ssn
        info = ssn.state.nodes.by_name.get(task.node_name)
        if info is None:
            raise ValueError(f"cannot evict {task.key}: node {task.node_name!r} unknown")
        i = info.idx
        old = np.stack([ssn.idle[:, i].copy(), ssn.releasing[:, i].copy()])
        req = task.req_vec(ssn.allocatable.shape[0])
        was_pipelined = task.status == S.PIPELINED
        dev = None
        if task.gpu_sharing is not None and task.gpu_groups:
            dev = self._save_dev(i, task)
        if was_pipelined:
            # Undoing a pipeline gives back what it took: the part taken from releasing goes
            # back to releasing (that pod is still terminating), the rest to idle. The kernel
            # takes min(req, releasing) from releasing. Pipelined in an earlier statement: the
            # split is unknown, so all of it goes to releasing (errs away from over-committing idle).
            from_rel = req
            for prev in reversed(self.ops):
                if prev.task is task and prev.kind == PIPELINE and prev.node == i:
                    from_rel = np.minimum(req, np.maximum(prev.old[1], 0.0))
                    break
            ssn.releasing[:, i] += from_rel
            ssn.idle[:, i] += req - from_rel
        else:
            ssn.releasing[:, i] += req
        ssn.avail[:, i] = ssn.idle[:, i] + ssn.releasing[:, i]
        if dev is not None:
            self._evict_shared(task, i, was_pipelined)
        ssn.touch_log.mark(i)
        self.ops.append(Op(EVICT, task, i, None, old, task.status, task.node_name, action, preemptor, dev))
        ssn.fire_deallocate(task)
        task.status = S.RELEASING if not was_pipelined else S.PENDING
        task.is_virtual = True

    def convert_to_pipelined(self, job_key: str, since: int = 0) -> None:
        """Turn this statement's allocations of a job into pipelines: nothing binds (no partial gang).

        ``since``: a checkpoint before which the statement holds no allocation of the job
        (only the ops after it are looked at)."""
        for op in self.ops[since:] if since else self.ops:
            if op.kind == ALLOCATE and op.task.job_key == job_key and op.task.status == S.ALLOCATED:
                op.kind = PIPELINE
                op.task.status = S.PIPELINED
                self.ssn.fire_pipelined(op.task)

    # ------------------------------------------------------------------ undo
    def checkpoint(self) -> int:
        return len(self.ops)

    def rollback(self, checkpoint: int) -> None:
        ssn = self.ssn
        while len(self.ops) > checkpoint:
            op = self.ops.pop()
            i = op.node
            ssn.idle[:, i] = op.old[0]
            ssn.releasing[:, i] = op.old[1]
            ssn.avail[:, i] = op.old[0] + op.old[1]
            if op.dev is not None:
                self._restore_dev(i, op.task, op.dev)
            ssn.touch_log.mark(i)
            if op.kind == EVICT:
                op.task.status = op.old_status
                ssn.fire_allocate(op.task)
            else:
                ssn.fire_deallocate(op.task)
                op.task.status = op.old_status
                op.task.node_name = op.old_node
            op.task.is_virtual = False

    def discard(self) -> None:
        self.rollback(0)

    def commit(self) -> None:
        """Send the operations to the cache in order; the statement is empty afterwards.

        A task evicted and then placed again in this statement (a victim *moved* by
        consolidation or consolidating reclaim) is evicted from its old node -- the cache
        sees it Releasing there -- and pipelined on its new one. Placed back on the very
        node it was evicted from -- and, for a shared-GPU task, into the same GPU groups -- it
        is *un-evicted* (KAI's unevict): neither operation is sent and the task keeps its
        status. A shared-GPU task moved to another group of the same node is a move.
        """
        ssn = self.ssn
        if len(self.ops) == 1 and self.ops[0].kind != EVICT:
            # one placement (a single-pod job): nothing can be un-evicted or moved
            op = self.ops[0]
            task = op.task
            task.is_virtual = False
            if op.kind == ALLOCATE:
                ssn.cache.bind(task, task.node_name)
            else:
                ssn.cache.pipeline(task, task.node_name)
                ssn.pipelined.append((task, op.old_status, op.old_node))
            self.ops = []
            return
        if not any(op.kind == EVICT for op in self.ops):
            # placements only (a gang): nothing can be un-evicted or moved
            cache, pipelined = ssn.cache, ssn.pipelined
            for op in self.ops:
                task = op.task
                task.is_virtual = False
                if op.kind == ALLOCATE:
                    cache.bind(task, task.node_name)
                else:
                    cache.pipeline(task, task.node_name)
                    pipelined.append((task, op.old_status, op.old_node))
            self.ops = []
            return
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for i, op in enumerate(self.ops):
            first.setdefault(id(op.task), i)
            last[id(op.task)] = i
        unevicted: set[int] = set()
        for key, i in first.items():
            a, b = self.ops[i], self.ops[last[key]]
            if a.kind == EVICT and b.kind != EVICT and b.node == a.node and (
                    a.dev is None or list(a.task.gpu_groups) == list(a.dev[2])):
                unevicted.add(key)      # (a fraction moved to another GPU group is a move)
        for i, op in enumerate(self.ops):
            task = op.task
            task.is_virtual = False
            key = id(task)
            if key in unevicted:
                if i == last[key]:
                    start = self.ops[first[key]]
                    task.status, task.node_name = start.old_status, start.old_node
                    if start.dev is not None:
                        task.gpu_groups = start.dev[2]      # still charged to its old groups
                continue
            if op.kind == ALLOCATE:
                ssn.cache.bind(task, task.node_name)
            elif op.kind == PIPELINE:
                ssn.cache.pipeline(task, task.node_name)
                ssn.pipelined.append((task, op.old_status, op.old_node))
            elif last[key] != i:
                # moved: evict it where it runs now, then keep its new (virtual) placement
                now = task.status, task.node_name, task.gpu_groups
                task.status, task.node_name = S.RELEASING, op.old_node
                if op.dev is not None:
                    task.gpu_groups = op.dev[2]             # its shared groups on the old node
                ssn.cache.evict(task, op.action, op.preemptor)
                task.status, task.node_name, task.gpu_groups = now
            else:
                ssn.cache.evict(task, op.action, op.preemptor)
        self.ops = []

    def __len__(self) -> int:
        return len(self.ops)
