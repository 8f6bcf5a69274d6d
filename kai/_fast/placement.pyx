# cython: language_level=3
"""Node choice kernels. See placement.pxd for shapes and units; reference/placement.py
is the readable twin the tests compare against."""
import numpy as np
cimport numpy as cnp
from libc.math cimport INFINITY

cnp.import_array()

cdef double EPS = 1e-9


cdef int best_node(const double[:, ::1] allocatable, const double[:, ::1] idle,
                   const double[:, ::1] avail, const double[::1] gpu_capacity,
                   const unsigned char[::1] mask, const int[::1] name_rank,
                   const double[::1] extra_score, bint has_extra,
                   const double[::1] req, const int[::1] req_cols,
                   int score_col, int strategy, bint cpu_only, int gpu_col,
                   bint allow_pipeline, unsigned char[::1] scratch,
                   bint* pipelined) noexcept nogil:
    """Index of the best node for ``req`` or -1; sets ``pipelined`` when it fits only on releasing.

    Works column by column over raw pointers so the feasibility passes are contiguous,
    branch-free loops the compiler vectorizes; scores are computed only for feasible nodes.
    """
    cdef Py_ssize_t n_nodes = mask.shape[0]
    cdef Py_ssize_t n, k
    cdef int c
    cdef double r, lo = INFINITY, hi = 0.0, x, cap, score, best_score = -INFINITY, span
    cdef int best = -1, best_rank = 0
    cdef const double* col
    cdef const unsigned char* m = &mask[0]
    cdef unsigned char* ok = &scratch[0]            # fits on idle + releasing
    cdef unsigned char* on_idle = &scratch[n_nodes]  # fits on idle alone
    cdef const double* s_alloc = &allocatable[score_col, 0]
    cdef const double* s_avail = &avail[score_col, 0]
    cdef const double* g_alloc = &allocatable[gpu_col, 0]
    cdef const double* gcap = &gpu_capacity[0]
    cdef const int* rank = &name_rank[0]
    cdef const double* extra = &extra_score[0]

    for n in range(n_nodes):
        ok[n] = m[n]
        on_idle[n] = 1
    for k in range(req_cols.shape[0]):
        c = req_cols[k]
        r = req[c] - EPS
        col = &avail[c, 0]
        for n in range(n_nodes):
            ok[n] = ok[n] & (col[n] >= r)
        col = &idle[c, 0]
        for n in range(n_nodes):
            on_idle[n] = on_idle[n] & (col[n] >= r)

    if strategy == BINPACK:
        # pre-order: min / max of non-allocated amount over candidate nodes that have the resource
        for n in range(n_nodes):
            if m[n] and s_alloc[n] > 0:
                x = s_avail[n]
                if x < lo:
                    lo = x
                if x > hi:
                    hi = x
    span = hi - lo

    for n in range(n_nodes):
        if not ok[n]:
            continue
        if not on_idle[n] and not allow_pipeline:
            continue
        score = 100.0 if on_idle[n] else 0.0
        if cpu_only and g_alloc[n] == 0:
            score += 10.0
        if strategy == BINPACK:
            if s_alloc[n] > 0 and hi > 0:
                if span == 0:
                    score += 9.0
                else:
                    score += 9.0 * (1.0 - (s_avail[n] - lo) / span)
        else:
            cap = gcap[n] if score_col == gpu_col else s_alloc[n]
            if cap > 0:
                score += s_avail[n] / cap
        if has_extra:
            score += extra[n]
        if score > best_score or (score == best_score and rank[n] < best_rank):
            best_score = score
            best = <int>n
            best_rank = rank[n]
    if best >= 0:
        pipelined[0] = not on_idle[best]
    return best


cdef inline void _take(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail,
                       const double[::1] req, const int[::1] req_cols, int n, bint pipelined) noexcept nogil:
    cdef Py_ssize_t k
    cdef int c
    cdef double from_rel
    for k in range(req_cols.shape[0]):
        c = req_cols[k]
        if pipelined:
            # consume releasing first, the rest from idle
            from_rel = req[c] if req[c] < releasing[c, n] else (releasing[c, n] if releasing[c, n] > 0 else 0.0)
            releasing[c, n] -= from_rel
            idle[c, n] -= req[c] - from_rel
        else:
            idle[c, n] -= req[c]
        avail[c, n] = idle[c, n] + releasing[c, n]


def place(const double[:, ::1] allocatable, double[:, ::1] idle, double[:, ::1] releasing,
          double[:, ::1] avail, const double[::1] gpu_capacity,
          const unsigned char[::1] mask, const int[::1] name_rank,
          extra_score, const double[::1] req, const int[::1] req_cols,
          int score_col, int strategy, bint cpu_only, int gpu_col, bint allow_pipeline,
          int count, int[::1] out_nodes, unsigned char[::1] out_pipelined,
          double[:, :, ::1] undo):
    """Place up to ``count`` identical tasks one after another, updating the arrays in place.

    Each task takes the best node given the placements before it. Returns how many were
    placed (stops at the first that fits nowhere). For task i: ``out_nodes[i]`` is the node,
    ``out_pipelined[i]`` 1 if it waits for releasing resources, ``undo[i, 0, :]`` and
    ``undo[i, 1, :]`` the node's idle and releasing columns before the placement (restore
    them in reverse order to undo exactly).
    """
    cdef Py_ssize_t n_nodes = mask.shape[0]
    cdef unsigned char[::1] scratch = np.empty(max(2 * n_nodes, 2), dtype=np.uint8)
    cdef const double[::1] extra
    cdef bint has_extra = extra_score is not None
    cdef int i, node, n_res = idle.shape[0]
    cdef Py_ssize_t c
    cdef bint pipelined = False
    cdef int placed = 0
    if has_extra:
        extra = extra_score
    else:
        extra = np.zeros(1, dtype=np.float64)
    with nogil:
        for i in range(count):
            node = best_node(allocatable, idle, avail, gpu_capacity, mask, name_rank, extra, has_extra,
                             req, req_cols, score_col, strategy, cpu_only, gpu_col, allow_pipeline,
                             scratch, &pipelined)
            if node < 0:
                break
            for c in range(n_res):
                undo[i, 0, c] = idle[c, node]
                undo[i, 1, c] = releasing[c, node]
            _take(idle, releasing, avail, req, req_cols, node, pipelined)
            out_nodes[i] = node
            out_pipelined[i] = pipelined
            placed += 1
    return placed


def fit_counts(const double[:, ::1] idle, const double[:, ::1] avail, const unsigned char[::1] mask,
               const double[::1] req, const int[::1] req_cols, long[::1] out_short):
    """For explanations: ``out_short[k]`` = masked nodes lacking column ``req_cols[k]`` on idle+releasing.

    Returns the number of masked nodes that fit. Called once per failed job, not per task.
    """
    cdef Py_ssize_t n, k
    cdef int c, fits = 0
    cdef bint ok
    for k in range(req_cols.shape[0]):
        out_short[k] = 0
    with nogil:
        for n in range(mask.shape[0]):
            if not mask[n]:
                continue
            ok = True
            for k in range(req_cols.shape[0]):
                c = req_cols[k]
                if avail[c, n] < req[c] - EPS:
                    out_short[k] += 1
                    ok = False
            if ok:
                fits += 1
    return fits


STRATEGY_BINPACK = BINPACK
STRATEGY_SPREAD = SPREAD
