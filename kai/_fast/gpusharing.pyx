# cython: language_level=3
"""Shared-GPU kernels: group accounting and node + device choice for a fraction task.

See gpusharing.pxd for shapes and units; reference/gpusharing.py is the readable twin the
tests compare against.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport INFINITY, floor, fabs
from libc.stdlib cimport malloc, free

from kai._fast.placement cimport NodeArrays
from kai._fast.placement import check_task

cnp.import_array()

cdef double EPS = 1e-9

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


cdef double group_free(double used, double alloc, double rel) noexcept nogil:
    """Portion still free in a group once its releasing fractions are gone (0 for no group)."""
    cdef double f
    if used <= EPS:
        return 0.0
    f = 1.0 - alloc + rel
    return f if f > 0.0 else 0.0


cdef inline void _contrib(double used, double rel, unsigned char from_rel,
                          double* idle_d, double* rel_d) noexcept nogil:
    idle_d[0] = 0.0
    rel_d[0] = 0.0
    if used <= EPS:
        return
    if from_rel:
        rel_d[0] = -1.0
    else:
        idle_d[0] = -1.0
    if fabs(used - rel) <= EPS:
        rel_d[0] += 1.0


def update_group(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail,
                 double[:, ::1] dev_used, double[:, ::1] dev_alloc, double[:, ::1] dev_rel,
                 unsigned char[:, ::1] dev_from_rel, int n, int d, double portion, int kind,
                 double sign, bint from_releasing, int gpu_col):
    """Add (sign=+1) or remove (sign=-1) one fraction of ``portion`` in group (n, d).

    ``kind`` is the fraction's state: KIND_ALLOCATED, KIND_RELEASING or KIND_PIPELINED. The
    node's GPU columns follow the group: one device leaves idle (or releasing, when
    ``from_releasing`` and the group is new) while the group exists, and one device is
    releasing while every fraction in it is releasing. An emptied group is reset to zeros.
    Works on the NodeTable's arrays and on a session's; shapes and (n, d) are checked first.
    """
    cdef double b_idle, b_rel, a_idle, a_rel, p
    cdef Py_ssize_t nn = idle.shape[1]
    if releasing.shape[0] != idle.shape[0] or avail.shape[0] != idle.shape[0] \
            or releasing.shape[1] != nn or avail.shape[1] != nn:
        raise ValueError("idle, releasing and avail must have the same (R, N) shape")
    if dev_used.shape[0] != nn or dev_alloc.shape[0] != nn or dev_rel.shape[0] != nn or dev_from_rel.shape[0] != nn \
            or dev_alloc.shape[1] != dev_used.shape[1] or dev_rel.shape[1] != dev_used.shape[1] \
            or dev_from_rel.shape[1] != dev_used.shape[1]:
        raise ValueError("dev_used, dev_alloc, dev_rel and dev_from_rel must all be (N, D)")
    if not (0 <= n < nn and 0 <= d < dev_used.shape[1] and 0 <= gpu_col < idle.shape[0]):
        raise ValueError(f"group ({n}, {d}) or gpu_col {gpu_col} outside the arrays")
    with nogil:
        _contrib(dev_used[n, d], dev_rel[n, d], dev_from_rel[n, d], &b_idle, &b_rel)
        if dev_used[n, d] <= EPS and sign > 0:
            dev_from_rel[n, d] = 1 if from_releasing else 0
        p = sign * portion
        dev_used[n, d] += p
        if kind == 0:
            dev_alloc[n, d] += p
        elif kind == 1:
            dev_alloc[n, d] += p
            dev_rel[n, d] += p
        else:
            dev_rel[n, d] -= p
        if dev_used[n, d] <= EPS:
            dev_used[n, d] = 0.0
            dev_alloc[n, d] = 0.0
            dev_rel[n, d] = 0.0
        _contrib(dev_used[n, d], dev_rel[n, d], dev_from_rel[n, d], &a_idle, &a_rel)
        if dev_used[n, d] == 0.0:
            dev_from_rel[n, d] = 0
        idle[gpu_col, n] += a_idle - b_idle
        releasing[gpu_col, n] += a_rel - b_rel
        avail[gpu_col, n] = idle[gpu_col, n] + releasing[gpu_col, n]


cdef inline int _group_fit(double used, double alloc, double rel, double p) noexcept nogil:
    """0: no fit; 1: fits only with releasing fractions gone; 2: fits now."""
    if used <= EPS or fabs(alloc - rel) <= EPS:
        return 0
    if 1.0 - alloc + rel - p < -EPS:
        return 0
    if alloc > EPS and 1.0 - alloc - p >= -EPS:
        return 2
    return 1


cdef inline void _whole_counts(const double[:, ::1] idle, const double[:, ::1] releasing,
                               const double[:, ::1] dev_used, Py_ssize_t n, int gpu_col,
                               int* wi, int* wr) noexcept nogil:
    cdef Py_ssize_t d
    cdef int free_slots = 0
    cdef double x
    for d in range(dev_used.shape[1]):
        if dev_used[n, d] <= EPS:
            free_slots += 1
    x = floor(idle[gpu_col, n] + EPS)
    wi[0] = <int>x if x > 0 else 0
    x = floor(releasing[gpu_col, n] + EPS)
    wr[0] = <int>x if x > 0 else 0
    if wi[0] > free_slots:
        wi[0] = free_slots
    if wr[0] > free_slots - wi[0]:
        wr[0] = free_slots - wi[0]


cdef inline double _group_score(double used, int gpu_order) noexcept nogil:
    if gpu_order == 1:
        return used
    if gpu_order == 2:
        return 1.0 - used
    return 0.0


def choose_node(NodeArrays a, mask, extra_score, req, req_cols, portion, int num_devices,
                int strategy, int gpu_order, double sharing_score, bint allow_pipeline, int[::1] out_devs):
    """Best node and devices for one shared-GPU task; returns (node or -1, pipelined).

    ``a``: the session's node and device arrays; ``portion``: float64[N]; the task's other
    arrays as for ``placement.place`` (``req`` without the GPU column). All are checked against
    ``a`` before the nogil loop.

    A node qualifies when it passes ``mask``, its portion is in (0, 1], the request fits on
    idle + releasing (idle alone without ``allow_pipeline``), and it offers ``num_devices``
    distinct devices: existing groups with room for the portion, then whole devices (idle,
    then releasing). Node score: +100 when cpu/memory and ``num_devices`` devices fit without
    waiting, nodeplacement on free GPUs (whole free devices plus the free part of groups;
    binpack 0..9 or spread free/capacity), +``sharing_score`` when an existing group fits
    (gpusharingorder), plus ``extra_score``; ties go to the lowest ``name_rank``. On the chosen
    node the devices are sorted by the GPU order (pack: fuller groups first, whole devices
    score 0; spread: whole devices 1, groups 1 - used; none: 0), ties by slot then whole
    idle before whole releasing. The task is pipelined when cpu/memory or a chosen device
    needs releasing resources.
    """
    check_task(a, mask, extra_score, req, req_cols)
    if not isinstance(portion, np.ndarray) or portion.dtype != np.float64 or portion.shape != (a.n_nodes,):
        raise ValueError(f"portion: expected float64[{a.n_nodes}]")
    cdef const double[:, ::1] allocatable = a.allocatable_v
    cdef const double[:, ::1] idle = a.idle_v
    cdef const double[:, ::1] releasing = a.releasing_v
    cdef const double[:, ::1] avail = a.avail_v
    cdef const double[::1] gpu_capacity = a.gpu_capacity_v
    cdef const int[::1] name_rank = a.name_rank_v
    cdef const double[:, ::1] dev_used = a.dev_used_v
    cdef const double[:, ::1] dev_alloc = a.dev_alloc_v
    cdef const double[:, ::1] dev_rel = a.dev_rel_v
    cdef const unsigned char[::1] m = mask
    cdef const double[::1] rq = req
    cdef const int[::1] rc = req_cols
    cdef const double[::1] por = portion
    cdef int gpu_col = a.gpu_col
    cdef Py_ssize_t n_nodes = a.n_nodes
    cdef Py_ssize_t n_dev = a.n_dev
    cdef Py_ssize_t n, d, k
    cdef int c, wi, wr, n_fit, n_fit_idle, n_groups, f, best = -1, best_rank = 0, pick
    cdef double lo = INFINITY, hi = 0.0, score, best_score = -INFINITY, p, x, span, cap
    cdef double bs, s
    cdef int border, bcode, ki, kr
    cdef bint cpu_idle, ok, bneeds, pipelined = False
    cdef const double[::1] extra
    cdef bint has_extra = extra_score is not None
    cdef double* free_gpu
    cdef unsigned char* taken
    if num_devices < 1 or out_devs.shape[0] < num_devices:
        raise ValueError("num_devices must be >= 1 and out_devs must hold num_devices entries")
    if has_extra:
        extra = extra_score
    else:
        extra = np.zeros(1, dtype=np.float64)
    free_gpu = <double*>malloc(max(n_nodes, 1) * sizeof(double))
    taken = <unsigned char*>malloc(max(n_dev, 1) * sizeof(unsigned char))
    if free_gpu == NULL or taken == NULL:
        free(free_gpu)
        free(taken)
        raise MemoryError()
    try:
        with nogil:
            for n in range(n_nodes):
                x = avail[gpu_col, n]
                for d in range(n_dev):
                    x += group_free(dev_used[n, d], dev_alloc[n, d], dev_rel[n, d])
                free_gpu[n] = x
            if strategy == 0:
                for n in range(n_nodes):
                    if m[n] and allocatable[gpu_col, n] > 0:
                        if free_gpu[n] < lo:
                            lo = free_gpu[n]
                        if free_gpu[n] > hi:
                            hi = free_gpu[n]
            span = hi - lo
            for n in range(n_nodes):
                p = por[n]
                if not m[n] or not (p > EPS and p <= 1.0 + EPS):
                    continue
                ok = True
                cpu_idle = True
                for k in range(rc.shape[0]):
                    c = rc[k]
                    if avail[c, n] < rq[c] - EPS:
                        ok = False
                        break
                    if idle[c, n] < rq[c] - EPS:
                        cpu_idle = False
                if not ok or (not allow_pipeline and not cpu_idle):
                    continue
                n_fit = 0
                n_fit_idle = 0
                n_groups = 0
                for d in range(n_dev):
                    f = _group_fit(dev_used[n, d], dev_alloc[n, d], dev_rel[n, d], p)
                    if f == 2:
                        n_fit_idle += 1
                        n_groups += 1
                    elif f == 1 and allow_pipeline:
                        n_fit += 1
                        n_groups += 1
                _whole_counts(idle, releasing, dev_used, n, gpu_col, &wi, &wr)
                n_fit_idle += wi
                n_fit += n_fit_idle
                if allow_pipeline:
                    n_fit += wr
                if n_fit < num_devices:
                    continue
                score = 100.0 if (cpu_idle and n_fit_idle >= num_devices) else 0.0
                if strategy == 0:
                    if allocatable[gpu_col, n] > 0 and hi > 0:
                        if span == 0:
                            score += 9.0
                        else:
                            score += 9.0 * (1.0 - (free_gpu[n] - lo) / span)
                else:
                    cap = gpu_capacity[n]
                    if cap > 0:
                        score += free_gpu[n] / cap
                if n_groups > 0:
                    score += sharing_score
                if has_extra:
                    score += extra[n]
                if score > best_score or (score == best_score and name_rank[n] < best_rank):
                    best_score = score
                    best = <int>n
                    best_rank = name_rank[n]
            if best >= 0:
                n = best
                p = por[n]
                for k in range(rc.shape[0]):
                    c = rc[k]
                    if idle[c, n] < rq[c] - EPS:
                        pipelined = True
                for d in range(n_dev):
                    taken[d] = 0
                _whole_counts(idle, releasing, dev_used, n, gpu_col, &wi, &wr)
                ki = 0
                kr = 0
                s = 1.0 if gpu_order == 2 else 0.0
                for pick in range(num_devices):
                    bs = -INFINITY
                    border = 0
                    bcode = 0
                    bneeds = False
                    for d in range(n_dev):
                        if taken[d]:
                            continue
                        f = _group_fit(dev_used[n, d], dev_alloc[n, d], dev_rel[n, d], p)
                        if f == 0 or (f == 1 and not allow_pipeline):
                            continue
                        x = _group_score(dev_used[n, d], gpu_order)
                        if x > bs:       # slots are visited in order: ties keep the lower slot
                            bs = x
                            border = <int>d
                            bcode = <int>d
                            bneeds = f == 1
                    if ki < wi and s > bs:
                        bs = s
                        border = <int>n_dev + ki
                        bcode = -1
                        bneeds = False
                    elif kr < wr and allow_pipeline and s > bs:
                        bs = s
                        border = <int>n_dev + wi + kr
                        bcode = -2
                        bneeds = True
                    if bcode >= 0:
                        taken[bcode] = 1
                    elif bcode == -1:
                        ki += 1
                    else:
                        kr += 1
                    out_devs[pick] = bcode
                    if bneeds:
                        pipelined = True
    finally:
        free(free_gpu)
        free(taken)
    return best, bool(pipelined)
