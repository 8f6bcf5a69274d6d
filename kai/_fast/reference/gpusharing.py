"""Readable twin of kai._fast.gpusharing (same arguments, same results, plain Python loops).

The tests run both on random inputs and compare. Shapes and units: see gpusharing.pxd.
"""
from __future__ import annotations

import math

EPS = 1e-9
STRATEGY_BINPACK = 0
STRATEGY_SPREAD = 1
GPU_ORDER_NONE = 0
GPU_ORDER_PACK = 1
GPU_ORDER_SPREAD = 2
KIND_ALLOCATED = 0
KIND_RELEASING = 1
KIND_PIPELINED = 2
WHOLE_IDLE = -1
WHOLE_RELEASING = -2


def _contrib(used, rel, from_rel):
    """What a shared group takes from the node's (idle, releasing) GPU columns."""
    if used <= EPS:
        return 0.0, 0.0
    idle_d, rel_d = (0.0, -1.0) if from_rel else (-1.0, 0.0)
    if abs(used - rel) <= EPS:
        rel_d += 1.0        # every fraction in the group is releasing: the device is releasing
    return idle_d, rel_d


def update_group(idle, releasing, avail, dev_used, dev_alloc, dev_rel, dev_from_rel, n, d,
                 portion, kind, sign, from_releasing, gpu_col):
    """See kai._fast.gpusharing.update_group."""
    b_idle, b_rel = _contrib(dev_used[n][d], dev_rel[n][d], dev_from_rel[n][d])
    if dev_used[n][d] <= EPS and sign > 0:
        dev_from_rel[n][d] = 1 if from_releasing else 0
    p = sign * portion
    dev_used[n][d] += p
    if kind == KIND_ALLOCATED:
        dev_alloc[n][d] += p
    elif kind == KIND_RELEASING:
        dev_alloc[n][d] += p
        dev_rel[n][d] += p
    else:
        dev_rel[n][d] -= p
    if dev_used[n][d] <= EPS:
        dev_used[n][d] = dev_alloc[n][d] = dev_rel[n][d] = 0.0
    a_idle, a_rel = _contrib(dev_used[n][d], dev_rel[n][d], dev_from_rel[n][d])
    if dev_used[n][d] == 0.0:
        dev_from_rel[n][d] = 0
    idle[gpu_col][n] += a_idle - b_idle
    releasing[gpu_col][n] += a_rel - b_rel
    avail[gpu_col][n] = idle[gpu_col][n] + releasing[gpu_col][n]


def _group_fits(used, alloc, rel, p):
    """(fits on idle + releasing, fits without releasing) for an existing group."""
    if used <= EPS or abs(alloc - rel) <= EPS:
        return False, False
    if 1.0 - alloc + rel - p < -EPS:
        return False, False
    return True, alloc > EPS and 1.0 - alloc - p >= -EPS


def _whole_counts(idle, releasing, dev_used, n, gpu_col):
    free_slots = sum(1 for u in dev_used[n] if u <= EPS)
    wi = max(0, int(math.floor(idle[gpu_col][n] + EPS)))
    wr = max(0, int(math.floor(releasing[gpu_col][n] + EPS)))
    wi = min(wi, free_slots)
    wr = min(wr, free_slots - wi)
    return wi, wr


def _candidates(idle, releasing, dev_used, dev_alloc, dev_rel, n, p, gpu_col, gpu_order, idle_only):
    """[(score, order, code, needs_releasing)] for node n, best first."""
    d_count = len(dev_used[n])
    out = []
    for d in range(d_count):
        fits, on_idle = _group_fits(dev_used[n][d], dev_alloc[n][d], dev_rel[n][d], p)
        if not fits or (idle_only and not on_idle):
            continue
        if gpu_order == GPU_ORDER_PACK:
            s = dev_used[n][d]
        elif gpu_order == GPU_ORDER_SPREAD:
            s = 1.0 - dev_used[n][d]
        else:
            s = 0.0
        out.append((s, d, d, not on_idle))
    wi, wr = _whole_counts(idle, releasing, dev_used, n, gpu_col)
    ws = 1.0 if gpu_order == GPU_ORDER_SPREAD else 0.0
    for k in range(wi):
        out.append((ws, d_count + k, WHOLE_IDLE, False))
    if not idle_only:
        for k in range(wr):
            out.append((ws, d_count + wi + k, WHOLE_RELEASING, True))
    out.sort(key=lambda c: (-c[0], c[1]))
    return out


def choose_node(a, mask, extra_score, req, req_cols, portion, num_devices, strategy, gpu_order,
                sharing_score, allow_pipeline, out_devs):
    """See kai._fast.gpusharing.choose_node (``a``: the node arrays as attributes)."""
    allocatable, idle, releasing, avail = a.allocatable, a.idle, a.releasing, a.avail
    gpu_capacity, name_rank, gpu_col = a.gpu_capacity, a.name_rank, a.gpu_col
    dev_used, dev_alloc, dev_rel = a.dev_used, a.dev_alloc, a.dev_rel
    n_nodes = len(mask)
    free = [0.0] * n_nodes
    for n in range(n_nodes):
        f = avail[gpu_col][n]
        for d in range(len(dev_used[n])):
            if dev_used[n][d] > EPS:
                f += max(0.0, 1.0 - dev_alloc[n][d] + dev_rel[n][d])
        free[n] = f
    lo, hi = math.inf, 0.0
    if strategy == STRATEGY_BINPACK:
        for n in range(n_nodes):
            if mask[n] and allocatable[gpu_col][n] > 0:
                lo = min(lo, free[n])
                hi = max(hi, free[n])
    best, best_key = -1, None
    for n in range(n_nodes):
        p = portion[n]
        if not mask[n] or not (EPS < p <= 1.0 + EPS):
            continue
        if not all(avail[c][n] >= req[c] - EPS for c in req_cols):
            continue
        cpu_idle = all(idle[c][n] >= req[c] - EPS for c in req_cols)
        if not allow_pipeline and not cpu_idle:
            continue
        cands = _candidates(idle, releasing, dev_used, dev_alloc, dev_rel, n, p, gpu_col, GPU_ORDER_NONE,
                            not allow_pipeline)
        if len(cands) < num_devices:
            continue
        n_idle = sum(1 for c in cands if not c[3])
        n_groups = sum(1 for c in cands if c[2] >= 0)
        score = 100.0 if (cpu_idle and n_idle >= num_devices) else 0.0
        if strategy == STRATEGY_BINPACK:
            if allocatable[gpu_col][n] > 0 and hi > 0:
                score += 9.0 if hi == lo else 9.0 * (1.0 - (free[n] - lo) / (hi - lo))
        else:
            cap = gpu_capacity[n]
            if cap > 0:
                score += free[n] / cap
        if n_groups > 0:
            score += sharing_score
        if extra_score is not None:
            score += extra_score[n]
        key = (score, -name_rank[n])
        if best_key is None or key > best_key:
            best, best_key = n, key
    if best < 0:
        return -1, False
    cands = _candidates(idle, releasing, dev_used, dev_alloc, dev_rel, best, portion[best], gpu_col,
                        gpu_order, not allow_pipeline)
    pipelined = not all(idle[c][best] >= req[c] - EPS for c in req_cols)
    for k in range(num_devices):
        out_devs[k] = cands[k][2]
        pipelined = pipelined or cands[k][3]
    return best, bool(pipelined)
