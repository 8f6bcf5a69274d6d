"""Readable twin of kai._fast.proportion (same arguments, same results, plain Python loops).

KAI's fair-share division (proportion plugin, resource_division.go), per resource:

1. Top-level queues divide the cluster capacity; then, top-down, the children of every queue
   divide that queue's fair share.
2. Within one sibling group:
   a. deserved pass: each queue gets min(deserved, requestable); deserved -1 means the whole
      amount being divided; requestable = min(request, limit) (limit -1 = no cap). If
      nothing is left (the quotas oversubscribe the total) the division stops here.
   b. over-quota pass, priority by priority (highest first), in rounds: unsatisfied queues
      get slices of the amount at round start weighted by
      shareWeight = max(0, nW + k * (nW - usage)), nW = weight / sum of weights of queues
      with remaining request. A queue whose remaining request fits its slice takes it and is
      satisfied; otherwise it takes floor(slice) and its fractional leftover is remembered.
      A new round runs while some queue was satisfied with less than its slice.
   c. rounding remainder: per priority (highest first), queues with a remembered leftover,
      largest leftover first, then smaller order_key, then lower index, get min(1, left)
      each, once.

Every sibling group is walked in (priority desc, index asc) order so the float arithmetic
is the same, step for step, as in the compiled kernel.

Used by the tests (random inputs, compared with the compiled kernel) and as the in-run
baseline of the benchmarks.
"""
from __future__ import annotations

import math

import numpy as np

UNLIMITED = -1.0
NO_FAIR_SHARE_DRF_MULTIPLIER = 1000.0


# --------------------------------------------------------------------------- helpers

def _as_2d(x, n, n_res, name):
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != n or a.shape[1] != n_res:
        raise ValueError(f"{name} must have shape ({n}, {n_res}), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _tree(parent, priority):
    """(children, roots, top_down): children lists and roots sorted by (priority desc,
    index asc), and every queue in breadth-first order from the roots."""
    n = len(parent)
    if n and (min(parent) < -1 or max(parent) >= n):
        raise ValueError("parent indices must be -1 or in [0, Q)")
    children = [[] for _ in range(n)]
    roots = []
    for i, p in enumerate(parent):
        (roots if p < 0 else children[p]).append(i)

    def by_priority(ids):
        return sorted(ids, key=lambda i: (-priority[i], i))

    roots = by_priority(roots)
    children = [by_priority(c) for c in children]
    top_down = list(roots)
    head = 0
    while head < len(top_down):
        top_down.extend(children[top_down[head]])
        head += 1
    if len(top_down) != n:
        raise ValueError("parent contains a cycle")
    return children, roots, top_down


def _requestable(request, limit):
    return request if limit == UNLIMITED else min(limit, request)


def _satisfied(request, limit, fair):
    return request <= fair or (limit != UNLIMITED and limit <= fair)


def _remaining_requested(request, limit, fair):
    req = _requestable(request, limit)
    return 0.0 if req < fair else req - fair


# --------------------------------------------------------------------------- division

def _up_to_fair_share(total, group, limit, weight, request, usage, k_value, fair, remembered):
    """One priority run (resource_division.divideUpToFairShare); returns what is left."""
    while True:
        another = False
        amount_round = total
        total_w = 0.0
        for q in group:
            if _remaining_requested(request[q], limit[q], fair[q]) > 0:
                total_w += weight[q]
        if total_w == 0:
            break
        share_w = {}
        sum_sw = 0.0
        for q in group:
            if _satisfied(request[q], limit[q], fair[q]):
                continue
            nw = weight[q] / total_w
            sw = nw + k_value * (nw - usage[q])
            share_w[q] = sw if sw > 0 else 0.0
            sum_sw += share_w[q]
        if sum_sw == 0:
            break
        for q in group:
            if total == 0:
                break
            if _satisfied(request[q], limit[q], fair[q]):
                continue
            req = _remaining_requested(request[q], limit[q], fair[q])
            if weight[q] == 0:
                continue
            piece = amount_round * (share_w[q] / sum_sw)
            give = 0.0
            if req <= piece:                      # satisfied in this round
                give = req
                remembered.pop(q, None)
            else:                                 # whole units only, remember the fraction
                fl = math.floor(piece)
                if fl > 0:
                    give = fl
                if piece - give > 0:
                    remembered[q] = piece - give
            if give == 0:
                continue
            fair[q] += give
            total -= give
            another = another or req < piece
        if not another or total == 0:
            break
    return total


def _divide_group(total, group, priority, order_key, deserved, limit, weight, request, usage,
                  k_value, fair):
    """resource_division.setResourceShare for one sibling group and one resource.

    ``group`` is sorted by (priority desc, index asc); the per-queue arrays are one resource
    column; ``fair`` is updated in place."""
    remaining = total
    for q in group:
        d = total if deserved[q] == UNLIMITED else deserved[q]
        amount = min(d, _requestable(request[q], limit[q]))
        fair[q] += amount
        remaining -= amount
    if not remaining > 0:
        return
    runs = []                                     # priority runs, highest priority first
    for q in group:
        if runs and priority[runs[-1][0]] == priority[q]:
            runs[-1].append(q)
        else:
            runs.append([q])
    remembered_by_run = []
    for run in runs:
        remembered = {}
        remaining = _up_to_fair_share(remaining, run, limit, weight, request, usage, k_value,
                                      fair, remembered)
        remembered_by_run.append(remembered)
    for remembered in remembered_by_run:
        if remaining <= 0:
            break
        for q in sorted(remembered, key=lambda q: (-remembered[q], order_key[q], q)):
            if remaining == 0:
                break
            give = min(1.0, remaining)
            fair[q] += give
            remaining -= give


# --------------------------------------------------------------------------- API

def divide_fair_share(parent, priority, order_key, deserved, limit, weight, request, usage,
                      capacity, k_value, fair_share_out):
    """Fill ``fair_share_out[Q, R]`` with every queue's fair share; returns it.

    ``request`` must already include each queue's descendants."""
    par = [int(p) for p in np.ascontiguousarray(parent, dtype=np.int32)]
    n = len(par)
    cap = np.ascontiguousarray(capacity, dtype=np.float64)
    if cap.ndim != 1:
        raise ValueError("capacity must be 1-D")
    n_res = cap.shape[0]
    if not np.isfinite(cap).all() or not math.isfinite(k_value):
        raise ValueError("capacity and k_value must be finite")
    pri = np.ascontiguousarray(priority, dtype=np.int64)
    key = np.ascontiguousarray(order_key, dtype=np.int64)
    if pri.shape != (n,) or key.shape != (n,):
        raise ValueError(f"priority and order_key must have shape ({n},)")
    arrays = [_as_2d(a, n, n_res, name) for a, name in (
        (deserved, "deserved"), (limit, "limit"), (weight, "weight"), (request, "request"),
        (usage, "usage"))]
    if (not isinstance(fair_share_out, np.ndarray) or fair_share_out.dtype != np.float64
            or fair_share_out.shape != (n, n_res)
            or not fair_share_out.flags.c_contiguous or not fair_share_out.flags.writeable):
        raise ValueError(f"fair_share_out must be a writable C-contiguous float64 array "
                         f"of shape ({n}, {n_res})")
    pri_l = pri.tolist()
    key_l = key.tolist()
    children, roots, top_down = _tree(par, pri_l)
    for r in range(n_res):
        des, lim, wei, req, use = (a[:, r].tolist() for a in arrays)
        fair = [0.0] * n
        _divide_group(float(cap[r]), roots, pri_l, key_l, des, lim, wei, req, use,
                      float(k_value), fair)
        for q in top_down:
            if children[q]:
                _divide_group(fair[q], children[q], pri_l, key_l, des, lim, wei, req, use,
                              float(k_value), fair)
        fair_share_out[:, r] = fair
    return fair_share_out


def aggregate_to_parents(parent, values):
    """Return a new float64[Q, R]: each row plus the sum of all its descendants' rows."""
    par = [int(p) for p in np.ascontiguousarray(parent, dtype=np.int32)]
    n = len(par)
    out = np.array(values, dtype=np.float64, order="C", copy=True)
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(f"values must have shape ({n}, R)")
    _, _, top_down = _tree(par, [0] * n)
    for q in reversed(top_down):                  # children before their parents
        if par[q] >= 0:
            for c in range(out.shape[1]):
                out[par[q], c] += out[q, c]
    return out


def allocatable_share(deserved, fair_share, limit, out):
    """ResourceShare.GetAllocatableShare elementwise; writes into and returns ``out``."""
    des = np.ascontiguousarray(deserved, dtype=np.float64)
    fs = np.ascontiguousarray(fair_share, dtype=np.float64)
    lim = np.ascontiguousarray(limit, dtype=np.float64)
    if des.shape != fs.shape or des.shape != lim.shape or des.ndim != 2:
        raise ValueError("deserved, fair_share and limit must be 2-D of one shape")
    if (not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != des.shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError("out must be a writable C-contiguous float64 array like deserved")
    for i in range(des.shape[0]):
        for c in range(des.shape[1]):
            d, f, m = float(des[i, c]), float(fs[i, c]), float(lim[i, c])
            if d == UNLIMITED:
                out[i, c] = m
                continue
            a = max(d, f)
            if m != UNLIMITED:
                a = min(m, a)
            out[i, c] = a
    return out


def dominant_resource_share(allocated, allocatable_share, total, out):
    """QueueResourceShare.GetDominantResourceShare per queue row; writes into ``out``."""
    al = np.ascontiguousarray(allocated, dtype=np.float64)
    sh = np.ascontiguousarray(allocatable_share, dtype=np.float64)
    tot = np.ascontiguousarray(total, dtype=np.float64)
    if al.ndim != 2 or sh.shape != al.shape or tot.shape != (al.shape[1],):
        raise ValueError("allocated/allocatable_share must be [Q, R] and total [R]")
    if (not isinstance(out, np.ndarray) or out.dtype != np.float64
            or out.shape != (al.shape[0],) or not out.flags.c_contiguous
            or not out.flags.writeable):
        raise ValueError("out must be a writable contiguous float64 array of shape (Q,)")
    for i in range(al.shape[0]):
        best = 0.0
        for c in range(al.shape[1]):
            a = float(sh[i, c])
            if a == UNLIMITED:
                a = float(tot[c])
            alloc = float(al[i, c])
            v = alloc * NO_FAIR_SHARE_DRF_MULTIPLIER if a == 0 else alloc / a
            if v > best:
                best = v
        out[i] = best
    return out
