"""GPU sharing: the ``gpupack``, ``gpuspread`` and ``gpusharingorder`` plugins and the allocator.

KAI places fraction (``gpu-fraction``), gpu-memory (``gpu-memory``) and multi-fraction
(``gpu-fraction-num-devices``) pods with ``gpu_sharing.AllocateFractionalGPUTaskToNode``:
nodes are scored as for any task, plus gpusharingorder's +1000 for a node with an existing
shared group the portion fits into; on the chosen node the candidate devices -- existing
groups with room, plus one "whole GPU" per idle or releasing device -- are sorted by the
GPU order fns (gpupack: fuller groups first, a whole device scores 0; gpuspread: 1 - used,
a whole device 1) and the first N distinct ones are taken. The task is pipelined when
cpu/memory or a chosen device waits for releasing resources.

Here the node and device choice is one call of ``kai._fast.gpusharing.choose_node`` per task
over the session's node and per-device arrays; the placement itself is
``Statement.allocate_shared`` (exact undo). Any of the three plugins installs the allocator
as ``ssn.shared_gpu_allocator``; gpupack / gpuspread set ``ssn.gpu_order`` and
gpusharingorder sets ``ssn.gpu_sharing_order_score``.

Per node a task's portion is its fraction, or gpu-memory / the node's device memory (label
``nvidia.com/gpu.memory``). Nodes without that label cannot host gpu-memory pods, and MIG
nodes (``kai.api.node_info.is_mig_node``) host no fractions. Both node facts are NodeTable
columns (``gpu_memory``, ``mig``); the per-request portion arrays are cached per session in
``ssn.gpu_portions``.
"""
from __future__ import annotations

import numpy as np

from kai._fast.gpusharing import GPU_ORDER_PACK, GPU_ORDER_SPREAD, choose_node
from kai.framework.explain import explain_task, new_tally, with_details
from kai.api import constants as C
from kai.api.resources import GPU
from kai.framework.plugin import Plugin, register_plugin

GPU_SHARING_SCORE = 1000.0     # KAI scores.GpuSharing
_EPS = 1e-9


def task_portions(ssn, gs) -> np.ndarray:
    """float64[N]: a shared-GPU task's portion per device on each node (its fraction, or its
    gpu-memory / the node's device memory); 0 where it cannot be hosted (no memory label for a
    gpu-memory request, MIG nodes). Cached in ``ssn.gpu_portions`` per (fraction, MiB)."""
    key = (gs.portion, gs.memory_mib)
    got = ssn.gpu_portions.get(key)
    if got is None:
        table = ssn.state.nodes
        if gs.portion:
            got = np.full(table.n, gs.portion)
        else:
            memory = table.gpu_memory
            with np.errstate(divide="ignore", invalid="ignore"):
                got = np.where(memory > 0, gs.memory_mib / np.maximum(memory, 1.0), 0.0)
        got[table.mig.astype(bool)] = 0.0
        got = np.ascontiguousarray(got)
        ssn.gpu_portions[key] = got
    return got


def allocate_shared(ssn, stmt, task, job, allow_pipeline: bool = True) -> tuple[bool, str]:
    """Place one shared-GPU task in ``stmt``: (True, "") or (False, why)."""
    gs = task.gpu_sharing
    mask = ssn.node_mask(task, job)
    portion = task_portions(ssn, gs)
    extra = ssn.node_scores(task, job, mask)
    dc = ssn.domain_constraints(task, job)
    wait = None
    if dc is not None:          # one task at a time: the constraints' filters and scores, once
        extra = np.zeros(mask.shape[0]) if extra is None else extra.copy()
        wait = np.zeros(mask.shape[0], dtype=np.uint8)
        mask = np.ascontiguousarray(dc.filter_and_score(mask, extra, wait))
    width = ssn.allocatable.shape[0]
    req = task.req_vec(width)[:width].copy()
    req[GPU] = 0.0
    req_cols = np.flatnonzero(req > 0).astype(np.int32)
    if gs.num_devices > ssn.dev_used.shape[1]:
        # more devices than any node has (the annotation is any positive integer): no node
        # qualifies, and the kernel's device buffer must not be sized by it
        return False, f"pod {task.key}: {explain_shared(ssn, task, job, mask, portion)}"
    out = np.empty(gs.num_devices, dtype=np.int32)
    node, pipelined = choose_node(ssn.arrays, mask, extra, req, req_cols, portion, gs.num_devices,
                                  ssn.placement_strategy(False), ssn.gpu_order,
                                  ssn.gpu_sharing_order_score, allow_pipeline, out)
    if node < 0:
        return False, f"pod {task.key}: {explain_shared(ssn, task, job, mask, portion)}"
    if wait is not None and wait[node]:
        if not allow_pipeline:
            return False, f"pod {task.key}: its pod constraints hold only once evicted pods are gone"
        pipelined = True
    stmt.allocate_shared(task, node, out, float(portion[node]), pipelined)
    return True, ""


def describe_request(gs) -> str:
    what = f"GPU fraction {gs.portion:g}" if gs.portion else f"{gs.memory_mib} MiB of GPU memory"
    return what + (f" on each of {gs.num_devices} devices" if gs.num_devices > 1 else "")


def explain_shared(ssn, task, job, mask: np.ndarray, portion: np.ndarray) -> str:
    """Why a shared-GPU task fits on no node (lazy: only for a failed task)."""
    gs = task.gpu_sharing
    table = ssn.state.nodes
    live = table.in_use.astype(bool)
    m = mask.astype(bool) & live
    if not m.any():
        return explain_task(ssn, task, job, mask)
    total = int(live.sum())
    tally = new_tally(ssn, live)
    tally.charge(~m, "node(s) excluded by node predicates or constraints")
    tally.charge(table.mig.astype(bool), "MIG node(s) (mig strategy allows no GPU fractions)")
    tally.charge(ssn.allocatable[GPU] <= 0, "node(s) without GPUs")
    if not gs.portion:
        tally.charge(table.gpu_memory <= 0,
                     f"node(s) without the {C.GPU_MEMORY_LABEL} label (needed for gpu-memory requests)")
        tally.charge(portion > 1.0 + _EPS, f"node(s) whose GPUs have less than {gs.memory_mib} MiB")
    req = task.req_vec(ssn.allocatable.shape[0])
    names = ssn.registry.names
    for c in np.flatnonzero(req > 0):
        if c == GPU:
            continue
        what = "too many pods" if names[c] == "pods" else f"insufficient {names[c]}"
        tally.charge(ssn.avail[c] < req[c] - _EPS, what)
    # the rest lack devices: count what each offers (groups with room + whole devices), vectorized
    rows = np.flatnonzero(tally.remaining)
    if rows.size:
        p = portion[rows][:, None]
        used, alloc, rel = ssn.dev_used[rows], ssn.dev_alloc[rows], ssn.dev_rel[rows]
        room = (used > _EPS) & (np.abs(alloc - rel) > _EPS) & (1.0 - alloc + rel - p >= -_EPS)
        groups = room.sum(axis=1)
        whole = (np.maximum(np.floor(ssn.idle[GPU, rows] + _EPS), 0)
                 + np.maximum(np.floor(ssn.releasing[GPU, rows] + _EPS), 0))
        lacking = (groups + whole) < gs.num_devices
        nodes = np.zeros(tally.remaining.shape[0], dtype=bool)
        nodes[rows[lacking]] = True
        tally.add(int(lacking.sum()),
                  f"node(s) without {gs.num_devices} GPU device(s) with room for the share"
                  if gs.num_devices > 1 else "node(s) without a GPU device with room for the share", nodes)
    detail = tally.detail() or "no node has room"
    return with_details(tally, f"0/{total} nodes fit a {describe_request(gs)}: {detail}")


def _install(ssn) -> None:
    ssn.shared_gpu_allocator = allocate_shared


@register_plugin
class GPUPack(Plugin):
    """GPUOrder: fuller shared groups first (score = used portion; a whole device 0)."""
    name = "gpupack"

    def on_session_open(self, ssn) -> None:
        _install(ssn)
        ssn.gpu_order = GPU_ORDER_PACK


@register_plugin
class GPUSpread(Plugin):
    """GPUOrder: emptier shared groups first (score = 1 - used; a whole device 1)."""
    name = "gpuspread"

    def on_session_open(self, ssn) -> None:
        _install(ssn)
        ssn.gpu_order = GPU_ORDER_SPREAD


@register_plugin
class GPUSharingOrder(Plugin):
    """NodeOrder: +1000 for a node with an existing shared group the task fits into."""
    name = "gpusharingorder"

    def on_session_open(self, ssn) -> None:
        _install(ssn)
        ssn.gpu_sharing_order_score = GPU_SHARING_SCORE
