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
from kai.api import constants as C
from kai.api.pod_info import PodInfo

if TYPE_CHECKING:
    from kai.framework.session import Session

S = C.PodStatus
ALLOCATE, PIPELINE, EVICT = "allocate", "pipeline", "evict"


class Op:
    __slots__ = ("kind", "task", "node", "cols", "old", "old_status", "old_node", "action", "preemptor")

    def __init__(self, kind, task, node, cols, old, old_status, old_node, action="", preemptor=""):
        self.kind = kind
        self.task = task
        self.node = node            # node column index
        self.cols = cols            # int32 columns touched (None = all)
        self.old = old              # float64[2, R]: idle and releasing columns before the op
        self.old_status = old_status
        self.old_node = old_node
        self.action = action
        self.preemptor = preemptor


class Statement:
    """Ordered, undoable operations; owned by one action step of one job."""

    def __init__(self, ssn: "Session") -> None:
        self.ssn = ssn
        self.ops: list[Op] = []

    # ------------------------------------------------------------------ operations
    def allocate_run(self, tasks: list[PodInfo], mask: np.ndarray, extra: np.ndarray | None,
                     allow_pipeline: bool = True) -> int:
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
        req = t0.req_vec(width)
        req_cols = np.flatnonzero(req > 0).astype(np.int32)
        k = len(tasks)
        out_nodes = np.empty(k, dtype=np.int32)
        out_pipe = np.empty(k, dtype=np.uint8)
        undo = np.empty((k, 2, width))
        cpu_only = t0.is_cpu_only
        strat = ssn.placement_strategy(cpu_only)
        score_col = 0 if cpu_only else 2
        placed = 0
        if extra is None and not ssn.node_mask_fns and ssn.use_node_queues:
            q = ssn.node_queue(mask, req, req_cols, score_col, strat, cpu_only, allow_pipeline)
            placed = q.place(ssn.touch_log, ssn.allocatable, ssn.idle, ssn.releasing, ssn.avail,
                             ssn.gpu_capacity, ssn.name_rank, k, out_nodes, out_pipe, undo)
            if placed < 0:
                placed = 0
            elif placed == k or q.exact:
                return self._record(tasks, placed, out_nodes, out_pipe, undo)
        if placed < k:
            rest = k - placed
            n2, p2, u2 = out_nodes[placed:], out_pipe[placed:], undo[placed:]
            got = _placement.place(ssn.allocatable, ssn.idle, ssn.releasing, ssn.avail, ssn.gpu_capacity,
                                   mask, ssn.name_rank, extra, req, req_cols, score_col, strat, cpu_only,
                                   2, allow_pipeline, rest, n2, p2, u2)
            for node in n2[:got]:
                ssn.touch_log.mark(int(node))
            placed += got
        return self._record(tasks, placed, out_nodes, out_pipe, undo)

    def _record(self, tasks, placed, out_nodes, out_pipe, undo) -> int:
        ssn = self.ssn
        infos = ssn.node_infos
        for i in range(placed):
            t = tasks[i]
            pipelined = bool(out_pipe[i])
            op = Op(PIPELINE if pipelined else ALLOCATE, t, int(out_nodes[i]), None, undo[i],
                    t.status, t.node_name)
            self.ops.append(op)
            t.status = S.PIPELINED if pipelined else S.ALLOCATED
            t.node_name = infos[op.node].name
            t.is_virtual = True
            ssn.fire_allocate(t)
        return placed

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
        ssn.touch_log.mark(i)
        self.ops.append(Op(EVICT, task, i, None, old, task.status, task.node_name, action, preemptor))
        ssn.fire_deallocate(task)
        task.status = S.RELEASING if not was_pipelined else S.PENDING
        task.is_virtual = True

    def convert_to_pipelined(self, job_key: str) -> None:
        """Turn this statement's allocations of a job into pipelines: nothing binds (no partial gang)."""
        for op in self.ops:
            if op.kind == ALLOCATE and op.task.job_key == job_key and op.task.status == S.ALLOCATED:
                op.kind = PIPELINE
                op.task.status = S.PIPELINED

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
        """Send the operations to the cache in order; the statement is empty afterwards."""
        ssn = self.ssn
        for op in self.ops:
            op.task.is_virtual = False
            if op.kind == ALLOCATE:
                ssn.cache.bind(op.task, op.task.node_name)
            elif op.kind == PIPELINE:
                ssn.cache.pipeline(op.task, op.task.node_name)
                ssn.pipelined.append((op.task, op.old_status, op.old_node))
            else:
                ssn.cache.evict(op.task, op.action, op.preemptor)
        self.ops = []

    def __len__(self) -> int:
        return len(self.ops)
