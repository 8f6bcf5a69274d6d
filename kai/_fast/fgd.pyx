# cython: language_level=3
"""Fragmentation Gradient Descent kernel. See fgd.pxd for shapes and units and
reference/fgd.py for the definitions in plain Python.

Per node, the fragment of a type depends on the devices only through three numbers:
total free GPU, how many devices have ``free >= g`` and the free GPU on devices with
``free < g``. They are computed once per distinct ``g`` (U values, not T types), and a
candidate placement, which moves k devices from one free value to another, updates them in
O(U) before the O(T) sum. One call answers every node for one decision.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport INFINITY, fabs
from libc.stdlib cimport malloc, free

cnp.import_array()

cdef double EPS = 1e-9
cdef double TIE = 1e-9


cdef inline double _fragmentation(double cpu, double mem, unsigned long long bit, double total,
                                  const double* cnt, const double* lt,
                                  const double[::1] t_cpu, const double[::1] t_mem, const int[::1] t_g,
                                  const int[::1] t_ndev, const unsigned long long[::1] t_models,
                                  const double[::1] t_weight) noexcept nogil:
    cdef Py_ssize_t k
    cdef int u
    cdef double out = 0.0, frag
    for k in range(t_weight.shape[0]):
        u = t_g[k]
        if u < 0 or (t_models[k] & bit) == 0 or cpu < t_cpu[k] - EPS or mem < t_mem[k] - EPS:
            frag = total
        elif cnt[u] >= t_ndev[k]:
            frag = lt[u]
        else:
            frag = total
        out += t_weight[k] * frag
    return out


cdef inline void _moved(const double[::1] g_values, const double* cnt, const double* lt,
                        double f_old, double f_new, double k, double* cnt2, double* lt2) noexcept nogil:
    """Stats after k devices go from free f_old to free f_new."""
    cdef Py_ssize_t u
    cdef double g
    for u in range(g_values.shape[0]):
        g = g_values[u] - EPS
        cnt2[u] = cnt[u]
        lt2[u] = lt[u]
        if f_old >= g:
            cnt2[u] -= k
        else:
            lt2[u] -= k * f_old
        if f_new >= g:
            cnt2[u] += k
        else:
            lt2[u] += k * f_new


def _check_lengths(Py_ssize_t n, Py_ssize_t t, Py_ssize_t n_u, node_arrays, type_arrays, t_g):
    """ValueError unless every per-node array has ``n`` rows, every per-type array ``t``
    entries, and every type's GPU index is -1 (no GPU) or in [0, n_u)."""
    for name, a in node_arrays:
        if a.shape[0] != n:
            raise ValueError(f"{name}: {a.shape[0]} rows, expected one per node ({n})")
    for name, a in type_arrays:
        if a.shape[0] != t:
            raise ValueError(f"{name}: {a.shape[0]} entries, expected one per task type ({t})")
    for k in range(t_g.shape[0]):
        if not -1 <= t_g[k] < n_u:
            raise ValueError(f"t_g[{k}] = {t_g[k]} outside [-1, {n_u})")


def frag_delta(const double[::1] cpu_free, const double[::1] mem_free, const double[:, ::1] dev_free,
               const unsigned long long[::1] node_model, const unsigned char[::1] mask,
               const double[::1] g_values, const double[::1] t_cpu, const double[::1] t_mem,
               const int[::1] t_g, const int[::1] t_ndev, const unsigned long long[::1] t_models,
               const double[::1] t_weight, double cpu, double mem, double gpu, int ndev,
               unsigned long long models, double[::1] out_delta, int[::1] out_device,
               FragCache cache=None):
    """Fill ``out_delta`` (F after - F before, +inf where the task does not fit) and
    ``out_device`` (fractional tasks: the device to use) for every node; return how many fit.

    ``cache`` (optional; one per task class and workload distribution) keeps each node's
    answer with the node state it was computed for, so only nodes whose state changed since
    the class's last call are computed again."""
    cdef Py_ssize_t n_nodes = mask.shape[0], n_dev = dev_free.shape[1], n_u = g_values.shape[0]
    cdef Py_ssize_t n, d, e, u
    cdef int feasible = 0, best_dev, n_full, nz
    _check_lengths(n_nodes, t_cpu.shape[0], n_u,
                   (("cpu_free", cpu_free), ("mem_free", mem_free), ("dev_free", dev_free),
                    ("node_model", node_model), ("out_delta", out_delta), ("out_device", out_device)),
                   (("t_mem", t_mem), ("t_g", t_g), ("t_ndev", t_ndev), ("t_models", t_models),
                    ("t_weight", t_weight)), t_g)
    cdef double total, before, after, best, best_free, f, c2, m2, g
    cdef bint seen, hit = False, use_cache = cache is not None
    cdef bint fractional = gpu > 0 and gpu < 1.0 - EPS, whole = gpu > 0 and ndev > 0 and not fractional
    cdef unsigned long long bit
    cdef double* buf = <double*>malloc((4 * n_u + n_dev + 1) * sizeof(double))
    cdef int* idx = <int*>malloc((n_dev + 1) * sizeof(int))     # their slots
    if buf == NULL or idx == NULL:
        free(buf)
        free(idx)
        raise MemoryError()
    cdef double* cnt = buf
    cdef double* lt = buf + n_u
    cdef double* cnt2 = buf + 2 * n_u
    cdef double* lt2 = buf + 3 * n_u
    cdef double* vals = buf + 4 * n_u            # the node's non-empty devices
    cdef double[:, ::1] ckey
    cdef double[::1] cdelta
    cdef int[::1] cdev
    if use_cache:
        if cache.key.shape[0] != n_nodes or cache.key.shape[1] != n_dev + 2:
            cache.reset(n_nodes, n_dev)
        ckey = cache.key
        cdelta = cache.delta
        cdev = cache.device
    try:
        with nogil:
            for n in range(n_nodes):
                out_delta[n] = INFINITY
                out_device[n] = -1
                if not mask[n]:
                    continue
                if use_cache:
                    hit = ckey[n, 0] == cpu_free[n] and ckey[n, 1] == mem_free[n]
                    if hit:
                        for d in range(n_dev):
                            if ckey[n, d + 2] != dev_free[n, d]:
                                hit = False
                                break
                    if hit:
                        out_delta[n] = cdelta[n]
                        out_device[n] = cdev[n]
                        if cdelta[n] < INFINITY:
                            feasible += 1
                        continue
                    ckey[n, 0] = cpu_free[n]
                    ckey[n, 1] = mem_free[n]
                    for d in range(n_dev):
                        ckey[n, d + 2] = dev_free[n, d]
                    cdelta[n] = INFINITY
                    cdev[n] = -1
                if cpu_free[n] < cpu - EPS or mem_free[n] < mem - EPS:
                    continue
                bit = node_model[n]
                if (fractional or whole) and (models & bit) == 0:
                    continue
                total = 0.0
                n_full = 0
                nz = 0
                for d in range(n_dev):
                    f = dev_free[n, d]
                    if f > EPS:
                        vals[nz] = f
                        idx[nz] = <int>d
                        nz += 1
                        total += f
                        if f >= 1.0 - EPS:
                            n_full += 1
                if whole and n_full < ndev:
                    continue
                if fractional:
                    seen = False
                    for e in range(nz):
                        if vals[e] >= gpu - EPS:
                            seen = True
                            break
                    if not seen:
                        continue
                for u in range(n_u):
                    g = g_values[u] - EPS
                    cnt[u] = 0.0
                    lt[u] = 0.0
                    for e in range(nz):
                        if vals[e] >= g:
                            cnt[u] += 1.0
                        else:
                            lt[u] += vals[e]
                before = _fragmentation(cpu_free[n], mem_free[n], bit, total, cnt, lt,
                                        t_cpu, t_mem, t_g, t_ndev, t_models, t_weight)
                c2 = cpu_free[n] - cpu
                m2 = mem_free[n] - mem
                if fractional:
                    best = INFINITY
                    best_free = INFINITY
                    best_dev = -1
                    for e in range(nz):
                        f = vals[e]
                        if f < gpu - EPS:
                            continue
                        seen = False
                        for d in range(e):
                            if fabs(vals[d] - f) <= EPS:
                                seen = True
                                break
                        if seen:
                            continue
                        _moved(g_values, cnt, lt, f, f - gpu, 1.0, cnt2, lt2)
                        after = _fragmentation(c2, m2, bit, total - gpu, cnt2, lt2,
                                               t_cpu, t_mem, t_g, t_ndev, t_models, t_weight)
                        if after < best - TIE or (after <= best + TIE and f < best_free - EPS):
                            best = after
                            best_free = f
                            best_dev = idx[e]
                    out_delta[n] = best - before
                    out_device[n] = best_dev
                    if use_cache:
                        cdev[n] = best_dev
                elif whole:
                    _moved(g_values, cnt, lt, 1.0, 0.0, <double>ndev, cnt2, lt2)
                    after = _fragmentation(c2, m2, bit, total - ndev, cnt2, lt2,
                                           t_cpu, t_mem, t_g, t_ndev, t_models, t_weight)
                    out_delta[n] = after - before
                else:
                    after = _fragmentation(c2, m2, bit, total, cnt, lt,
                                           t_cpu, t_mem, t_g, t_ndev, t_models, t_weight)
                    out_delta[n] = after - before
                if use_cache:
                    cdelta[n] = out_delta[n]
                feasible += 1
    finally:
        free(buf)
        free(idx)
    return feasible


cdef class FragCache:
    """One task class's answers per node (delta, device) with the node state (cpu, memory,
    device row) they were computed for. Valid for one task class under one workload
    distribution and one mask meaning: make a new one (or ``reset``) when those change."""
    cdef public double[:, ::1] key
    cdef public double[::1] delta
    cdef public int[::1] device

    def __init__(self, Py_ssize_t n_nodes=0, Py_ssize_t n_dev=0):
        self.reset(n_nodes, n_dev)

    def reset(self, Py_ssize_t n_nodes, Py_ssize_t n_dev):
        self.key = np.full((n_nodes, n_dev + 2), np.nan)
        self.delta = np.full(n_nodes, np.inf)
        self.device = np.full(n_nodes, -1, dtype=np.int32)


def node_fragmentation(const double[::1] cpu_free, const double[::1] mem_free,
                       const double[:, ::1] dev_free, const unsigned long long[::1] node_model,
                       const double[::1] g_values, const double[::1] t_cpu, const double[::1] t_mem,
                       const int[::1] t_g, const int[::1] t_ndev, const unsigned long long[::1] t_models,
                       const double[::1] t_weight, double[::1] out):
    """``out[n]`` = expected fragmentation F of node n as it is (for reports and tests)."""
    cdef Py_ssize_t n_nodes = cpu_free.shape[0], n_dev = dev_free.shape[1], n_u = g_values.shape[0]
    cdef Py_ssize_t n, d, u
    cdef double total, g, f
    _check_lengths(n_nodes, t_cpu.shape[0], n_u,
                   (("mem_free", mem_free), ("dev_free", dev_free), ("node_model", node_model), ("out", out)),
                   (("t_mem", t_mem), ("t_g", t_g), ("t_ndev", t_ndev), ("t_models", t_models),
                    ("t_weight", t_weight)), t_g)
    cdef double* buf = <double*>malloc((2 * n_u + 1) * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    cdef double* cnt = buf
    cdef double* lt = buf + n_u
    try:
        with nogil:
            for n in range(n_nodes):
                total = 0.0
                for d in range(n_dev):
                    total += dev_free[n, d]
                for u in range(n_u):
                    g = g_values[u] - EPS
                    cnt[u] = 0.0
                    lt[u] = 0.0
                    for d in range(n_dev):
                        f = dev_free[n, d]
                        if f >= g:
                            cnt[u] += 1.0
                        else:
                            lt[u] += f
                out[n] = _fragmentation(cpu_free[n], mem_free[n], node_model[n], total, cnt, lt,
                                        t_cpu, t_mem, t_g, t_ndev, t_models, t_weight)
    finally:
        free(buf)


def device_view(const double[::1] idle_gpu, const double[:, ::1] dev_used, const double[:, ::1] dev_alloc,
                const double[:, ::1] dev_rel, double[:, ::1] out):
    """The device rows ``frag_delta`` reads, from the session's GPU-sharing arrays.

    ``out[n, d]`` (float64[N, W], W >= D): a shared group in slot d (``dev_used > 0``) has
    ``1 - max(allocated, used)`` free when its fractions are allocated and not all releasing,
    else 0; the node's whole idle devices (``floor(idle_gpu)``) fill the empty slots in order
    (then slots >= D) with 1.0; the rest is 0."""
    cdef Py_ssize_t n_nodes = out.shape[0], width = out.shape[1], n_dev = dev_used.shape[1]
    cdef Py_ssize_t n, d
    cdef int whole
    cdef double used, alloc, rel, f
    if idle_gpu.shape[0] != n_nodes or dev_used.shape[0] != n_nodes or dev_alloc.shape[0] != n_nodes \
            or dev_rel.shape[0] != n_nodes or dev_alloc.shape[1] != n_dev or dev_rel.shape[1] != n_dev:
        raise ValueError("idle_gpu, dev_used, dev_alloc, dev_rel and out must have one row per node, "
                         "and the dev_* arrays the same width")
    if width < n_dev:
        raise ValueError(f"out: width {width} < the {n_dev} device slots")
    with nogil:
        for n in range(n_nodes):
            whole = <int>(idle_gpu[n] + EPS) if idle_gpu[n] > 0 else 0
            for d in range(width):
                f = 0.0
                if d < n_dev and dev_used[n, d] > EPS:
                    used = dev_used[n, d]
                    alloc = dev_alloc[n, d]
                    rel = dev_rel[n, d]
                    if alloc > EPS and fabs(alloc - rel) > EPS:
                        f = 1.0 - (alloc if alloc > used else used)
                        if f < 0.0:
                            f = 0.0
                elif whole > 0:
                    f = 1.0
                    whole -= 1
                out[n, d] = f


def band_scores(const double[::1] delta, const double[:, ::1] dev_free, double band, double tie,
                double[::1] out):
    """Node scores from ``frag_delta``'s deltas: ``band`` for the smallest delta, 0 for the
    largest (linear in between, KAI's pack formula on -delta), minus ``tie`` per free device
    part (best fit among equal deltas); 0 where delta is +inf. Returns the number scored."""
    cdef Py_ssize_t n_nodes = delta.shape[0], n_dev = dev_free.shape[1], n, d
    cdef double lo = INFINITY, hi = -INFINITY, span, free_gpu
    cdef int scored = 0
    if dev_free.shape[0] != n_nodes or out.shape[0] != n_nodes:
        raise ValueError("delta, dev_free and out must have one row per node")
    with nogil:
        for n in range(n_nodes):
            if delta[n] < INFINITY:
                if delta[n] < lo:
                    lo = delta[n]
                if delta[n] > hi:
                    hi = delta[n]
                scored += 1
        span = hi - lo
        for n in range(n_nodes):
            if delta[n] < INFINITY:
                free_gpu = 0.0
                for d in range(n_dev):
                    free_gpu += dev_free[n, d]
                if span <= EPS:
                    out[n] = band - tie * free_gpu
                else:
                    out[n] = band * (1.0 - (delta[n] - lo) / span) - tie * free_gpu
            else:
                out[n] = 0.0
    return scored
