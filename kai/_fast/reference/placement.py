"""Readable twin of kai._fast.placement (same arguments, same results, plain Python loops).

Used by the tests (random inputs, compared with the compiled kernel) and as the in-run
baseline of the benchmarks.
"""
from __future__ import annotations

import math

EPS = 1e-9
STRATEGY_BINPACK = 0
STRATEGY_SPREAD = 1


def _best_node(allocatable, idle, avail, gpu_capacity, mask, name_rank, extra, req, req_cols,
               score_col, strategy, cpu_only, gpu_col, allow_pipeline, wait=None):
    n_nodes = len(mask)
    candidates = [n for n in range(n_nodes) if mask[n]]
    fitting = [n for n in candidates if all(avail[c][n] >= req[c] - EPS for c in req_cols)]
    lo, hi = math.inf, 0.0
    if strategy == STRATEGY_BINPACK:
        for n in candidates:
            if allocatable[score_col][n] > 0:
                lo = min(lo, avail[score_col][n])
                hi = max(hi, avail[score_col][n])
    best, best_key = -1, None
    for n in fitting:
        fits_idle = all(idle[c][n] >= req[c] - EPS for c in req_cols) and not (wait is not None and wait[n])
        if not fits_idle and not allow_pipeline:
            continue
        score = 100.0 if fits_idle else 0.0          # nodeavailability
        if cpu_only and allocatable[gpu_col][n] == 0:
            score += 10.0                             # resourcetype
        if strategy == STRATEGY_BINPACK:             # nodeplacement, KAI's pack formula
            if allocatable[score_col][n] > 0 and hi > 0:
                score += 9.0 if hi == lo else 9.0 * (1.0 - (avail[score_col][n] - lo) / (hi - lo))
        else:
            cap = gpu_capacity[n] if score_col == gpu_col else allocatable[score_col][n]
            if cap > 0:
                score += avail[score_col][n] / cap
        if extra is not None:
            score += extra[n]
        key = (score, -name_rank[n])
        if best_key is None or key > best_key:
            best, best_key = n, key
    if best < 0:
        return -1, False
    return best, not all(idle[c][best] >= req[c] - EPS for c in req_cols) or bool(wait is not None and wait[best])


def place(a, mask, extra_score, req, req_cols, score_col, strategy, cpu_only, allow_pipeline, out, start=0,
          constraints=None):
    """See kai._fast.placement.place. ``a`` has the node arrays as attributes (a NodeArrays),
    ``out`` the output arrays (a Placements), ``constraints`` a reference DomainConstraints."""
    allocatable, idle, releasing, avail = a.allocatable, a.idle, a.releasing, a.avail
    n_res = len(idle)
    count = out.capacity - start
    for i in range(count):
        m, extra, wait = mask, extra_score, None
        if constraints is not None and constraints.n_c:
            extra = [float(x) for x in extra_score] if extra_score is not None else [0.0] * len(mask)
            wait = [0] * len(mask)
            m = constraints.filter_and_score(mask, extra, wait)
        node, pipelined = _best_node(allocatable, idle, avail, a.gpu_capacity, m, a.name_rank,
                                     extra, req, req_cols, score_col, strategy, cpu_only,
                                     a.gpu_col, allow_pipeline, wait)
        if node < 0:
            return i
        if constraints is not None and constraints.n_c:
            constraints.place_at(node)
        for c in range(n_res):
            out.undo[start + i][0][c] = idle[c][node]
            out.undo[start + i][1][c] = releasing[c][node]
        for c in req_cols:
            if pipelined:
                from_rel = min(req[c], max(releasing[c][node], 0.0))
                releasing[c][node] -= from_rel
                idle[c][node] -= req[c] - from_rel
            else:
                idle[c][node] -= req[c]
            avail[c][node] = idle[c][node] + releasing[c][node]
        out.nodes[start + i] = node
        out.pipelined[start + i] = pipelined
    return count


def fit_counts(a, mask, req, req_cols, out_short):
    """See kai._fast.placement.fit_counts."""
    avail = a.avail
    for k in range(len(req_cols)):
        out_short[k] = 0
    fits = 0
    for n in range(len(mask)):
        if not mask[n]:
            continue
        ok = True
        for k, c in enumerate(req_cols):
            if avail[c][n] < req[c] - EPS:
                out_short[k] += 1
                ok = False
        fits += ok
    return fits
