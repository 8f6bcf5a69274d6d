# cython: language_level=3
"""Fair-share division of KAI's proportion plugin, for all queues and resources at once.

See proportion.pxd for shapes, units and the -1 conventions; reference/proportion.py is the
readable twin the tests compare against (results are bit-identical: both walk the queues in
the same order and do the same float operations in the same sequence).

Iteration order: KAI walks Go maps, whose order is random, so its float sums are only
defined up to rounding. Here every sibling group is walked in (priority desc, row index asc)
order, in every pass.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport floor
from libc.stdlib cimport malloc, free, qsort
from libc.stdint cimport int32_t, int64_t

cnp.import_array()

cdef double UNLIMITED = -1.0
cdef double NO_FAIR_SHARE_DRF_MULTIPLIER = 1000.0


# ----------------------------------------------------------------------------- tree

cdef int _cmp_prio(const void* a, const void* b) noexcept nogil:
    cdef const PrioEntry* x = <const PrioEntry*>a
    cdef const PrioEntry* y = <const PrioEntry*>b
    if x.prio > y.prio:
        return -1
    if x.prio < y.prio:
        return 1
    if x.idx < y.idx:
        return -1
    if x.idx > y.idx:
        return 1
    return 0


cdef int build_tree(const int32_t[::1] parent, const int64_t[::1] priority,
                    int32_t[::1] child_start, int32_t[::1] child_list, int32_t[::1] bfs,
                    PrioEntry* prio_buf) noexcept nogil:
    """CSR children lists (slot Q = the roots), each sorted by (priority desc, index asc),
    and a top-down order of all queues. Returns -1 if some queue is unreachable (cycle)."""
    cdef Py_ssize_t n = parent.shape[0]
    cdef Py_ssize_t i, s, a, b, k, head, tail
    cdef int32_t p
    for s in range(n + 3):
        child_start[s] = 0
    for i in range(n):
        p = parent[i]
        s = n if p < 0 else p
        child_start[s + 2] += 1
    for s in range(2, n + 3):
        child_start[s] += child_start[s - 1]
    # after this pass child_start[s] is the start of slot s and child_start[s + 1] its end
    for i in range(n):
        p = parent[i]
        s = n if p < 0 else p
        child_list[child_start[s + 1]] = <int32_t>i
        child_start[s + 1] += 1
    for s in range(n + 1):
        a = child_start[s]
        b = child_start[s + 1]
        if b - a > 1:
            for k in range(a, b):
                prio_buf[k - a].prio = priority[child_list[k]]
                prio_buf[k - a].idx = child_list[k]
            qsort(prio_buf, <size_t>(b - a), sizeof(PrioEntry), _cmp_prio)
            for k in range(a, b):
                child_list[k] = prio_buf[k - a].idx
    tail = 0
    for k in range(child_start[n], child_start[n + 1]):
        bfs[tail] = child_list[k]
        tail += 1
    head = 0
    while head < tail:
        i = bfs[head]
        head += 1
        for k in range(child_start[i], child_start[i + 1]):
            bfs[tail] = child_list[k]
            tail += 1
    if tail != n:
        return -1
    return 0


# ----------------------------------------------------------------------------- division

cdef inline double _requestable(double request, double limit) noexcept nogil:
    # ResourceShare.GetRequestableShare
    if limit == UNLIMITED:
        return request
    return limit if limit < request else request


cdef inline bint _satisfied(double request, double limit, double fair) noexcept nogil:
    # resource_division.isQueueSatisfied
    if request <= fair:
        return True
    return limit != UNLIMITED and limit <= fair


cdef inline double _remaining_requested(double request, double limit, double fair) noexcept nogil:
    cdef double req = _requestable(request, limit)
    if req < fair:
        return 0.0
    return req - fair


cdef int _cmp_rem(const void* a, const void* b) noexcept nogil:
    # largest remainder first, then earlier creation, then lower row index
    cdef const RemEntry* x = <const RemEntry*>a
    cdef const RemEntry* y = <const RemEntry*>b
    if x.rem > y.rem:
        return -1
    if x.rem < y.rem:
        return 1
    if x.key < y.key:
        return -1
    if x.key > y.key:
        return 1
    if x.idx < y.idx:
        return -1
    if x.idx > y.idx:
        return 1
    return 0


cdef double _up_to_fair_share(double total, Py_ssize_t r, const int32_t[::1] members,
                              Py_ssize_t lo, Py_ssize_t hi, const double[:, ::1] limit,
                              const double[:, ::1] weight, const double[:, ::1] request,
                              const double[:, ::1] usage, double k_value,
                              double[:, ::1] fair_share, double[::1] rem,
                              unsigned char[::1] has_rem, double[::1] share_w) noexcept nogil:
    """resource_division.divideUpToFairShare for one priority run members[lo:hi]."""
    cdef Py_ssize_t t
    cdef int32_t q
    cdef bint another
    cdef double amount_round, total_w, sum_sw, nw, sw, req, piece, give, fl
    while True:
        another = False
        amount_round = total
        # calcShareWeights
        total_w = 0.0
        for t in range(lo, hi):
            q = members[t]
            if _remaining_requested(request[q, r], limit[q, r], fair_share[q, r]) > 0:
                total_w += weight[q, r]
        if total_w == 0:
            break
        sum_sw = 0.0
        for t in range(lo, hi):
            q = members[t]
            if _satisfied(request[q, r], limit[q, r], fair_share[q, r]):
                continue
            nw = weight[q, r] / total_w
            sw = nw + k_value * (nw - usage[q, r])
            if not (sw > 0):
                sw = 0.0
            share_w[q] = sw
            sum_sw += sw
        if sum_sw == 0:
            break
        for t in range(lo, hi):
            if total == 0:
                break
            q = members[t]
            if _satisfied(request[q, r], limit[q, r], fair_share[q, r]):
                continue
            req = _remaining_requested(request[q, r], limit[q, r], fair_share[q, r])
            if weight[q, r] == 0:
                continue
            piece = amount_round * (share_w[q] / sum_sw)
            # getResourceToGiveInCurrentRound
            give = 0.0
            if req <= piece:
                give = req
                has_rem[q] = 0
            else:
                fl = floor(piece)
                if fl > 0:
                    give = fl
                if piece - give > 0:
                    rem[q] = piece - give
                    has_rem[q] = 1
            if give == 0:
                continue
            fair_share[q, r] += give
            total -= give
            another = another or req < piece
        if not another or total == 0:
            break
    return total


cdef void divide_group(double total, Py_ssize_t r, const int32_t[::1] members, Py_ssize_t lo,
                       Py_ssize_t hi, const int64_t[::1] priority,
                       const int64_t[::1] order_key, const double[:, ::1] deserved,
                       const double[:, ::1] limit, const double[:, ::1] weight,
                       const double[:, ::1] request, const double[:, ::1] usage,
                       double k_value, double[:, ::1] fair_share, double[::1] rem,
                       unsigned char[::1] has_rem, double[::1] share_w,
                       RemEntry* entries) noexcept nogil:
    """resource_division.setResourceShare for one sibling group and one resource."""
    cdef Py_ssize_t j, k, t, m
    cdef int32_t q
    cdef int64_t prio
    cdef double remaining = total, d, req, amount, give
    if hi <= lo:
        return
    # deserved pass
    for j in range(lo, hi):
        q = members[j]
        has_rem[q] = 0
        d = deserved[q, r]
        if d == UNLIMITED:
            d = total
        req = _requestable(request[q, r], limit[q, r])
        amount = d if d < req else req
        fair_share[q, r] += amount
        remaining -= amount
    if not (remaining > 0):
        return
    # over-quota pass, one priority run at a time, highest priority first
    j = lo
    while j < hi:
        prio = priority[members[j]]
        k = j + 1
        while k < hi and priority[members[k]] == prio:
            k += 1
        remaining = _up_to_fair_share(remaining, r, members, j, k, limit, weight, request,
                                      usage, k_value, fair_share, rem, has_rem, share_w)
        j = k
    # rounding remainder, dealt in chunks of at most 1 per remembered queue
    j = lo
    while j < hi:
        if remaining <= 0:
            break
        prio = priority[members[j]]
        k = j + 1
        while k < hi and priority[members[k]] == prio:
            k += 1
        m = 0
        for t in range(j, k):
            q = members[t]
            if has_rem[q]:
                entries[m].rem = rem[q]
                entries[m].key = order_key[q]
                entries[m].idx = q
                m += 1
        if m > 1:
            qsort(entries, <size_t>m, sizeof(RemEntry), _cmp_rem)
        for t in range(m):
            if remaining == 0:
                break
            give = 1.0 if 1.0 < remaining else remaining
            fair_share[entries[t].idx, r] += give
            remaining -= give
        j = k


cdef void _divide_all(const int32_t[::1] child_start, const int32_t[::1] child_list,
                      const int32_t[::1] bfs, const int64_t[::1] priority,
                      const int64_t[::1] order_key, const double[:, ::1] deserved,
                      const double[:, ::1] limit, const double[:, ::1] weight,
                      const double[:, ::1] request, const double[:, ::1] usage,
                      const double[::1] capacity, double k_value, double[:, ::1] fair_share,
                      double[::1] rem, unsigned char[::1] has_rem, double[::1] share_w,
                      RemEntry* entries) noexcept nogil:
    cdef Py_ssize_t n = fair_share.shape[0], n_res = fair_share.shape[1]
    cdef Py_ssize_t r, i, q
    for r in range(n_res):
        for i in range(n):
            fair_share[i, r] = 0.0
        divide_group(capacity[r], r, child_list, child_start[n], child_start[n + 1],
                     priority, order_key, deserved, limit, weight, request, usage, k_value,
                     fair_share, rem, has_rem, share_w, entries)
        for i in range(n):
            q = bfs[i]
            if child_start[q + 1] > child_start[q]:
                divide_group(fair_share[q, r], r, child_list, child_start[q],
                             child_start[q + 1], priority, order_key, deserved, limit,
                             weight, request, usage, k_value, fair_share, rem, has_rem,
                             share_w, entries)


# ----------------------------------------------------------------------------- python API

def _as_2d(x, Py_ssize_t n, Py_ssize_t n_res, str name):
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != n or a.shape[1] != n_res:
        raise ValueError(f"{name} must have shape ({n}, {n_res}), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _tree(parent, priority):
    cdef Py_ssize_t n = parent.shape[0]
    if n and (parent.min() < -1 or parent.max() >= n):
        raise ValueError("parent indices must be -1 or in [0, Q)")
    child_start = np.empty(n + 3, dtype=np.int32)
    child_list = np.empty(n, dtype=np.int32)
    bfs = np.empty(n, dtype=np.int32)
    cdef int32_t[::1] cs = child_start, cl = child_list, bf = bfs
    cdef const int32_t[::1] par = parent
    cdef const int64_t[::1] pri = priority
    cdef PrioEntry* buf = <PrioEntry*>malloc(sizeof(PrioEntry) * (n + 1))
    cdef int rc
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            rc = build_tree(par, pri, cs, cl, bf, buf)
    finally:
        free(buf)
    if rc != 0:
        raise ValueError("parent contains a cycle")
    return child_start, child_list, bfs


def divide_fair_share(parent, priority, order_key, deserved, limit, weight, request, usage,
                      capacity, double k_value, fair_share_out):
    """Fill ``fair_share_out[Q, R]`` with every queue's fair share; returns it.

    ``request`` must already include each queue's descendants. See proportion.pxd.
    """
    par = np.ascontiguousarray(parent, dtype=np.int32)
    if par.ndim != 1:
        raise ValueError("parent must be 1-D")
    cdef Py_ssize_t n = par.shape[0]
    cap = np.ascontiguousarray(capacity, dtype=np.float64)
    if cap.ndim != 1:
        raise ValueError("capacity must be 1-D")
    cdef Py_ssize_t n_res = cap.shape[0]
    if not np.isfinite(cap).all() or not np.isfinite(k_value):
        raise ValueError("capacity and k_value must be finite")
    pri = np.ascontiguousarray(priority, dtype=np.int64)
    key = np.ascontiguousarray(order_key, dtype=np.int64)
    if pri.shape != (n,) or key.shape != (n,):
        raise ValueError(f"priority and order_key must have shape ({n},)")
    des = _as_2d(deserved, n, n_res, "deserved")
    lim = _as_2d(limit, n, n_res, "limit")
    wei = _as_2d(weight, n, n_res, "weight")
    req = _as_2d(request, n, n_res, "request")
    use = _as_2d(usage, n, n_res, "usage")
    if (not isinstance(fair_share_out, np.ndarray) or fair_share_out.dtype != np.float64
            or fair_share_out.shape != (n, n_res)
            or not fair_share_out.flags.c_contiguous or not fair_share_out.flags.writeable):
        raise ValueError(f"fair_share_out must be a writable C-contiguous float64 array "
                         f"of shape ({n}, {n_res})")
    child_start, child_list, bfs = _tree(par, pri)
    rem = np.zeros(n, dtype=np.float64)
    has_rem = np.zeros(n, dtype=np.uint8)
    share_w = np.zeros(n, dtype=np.float64)

    cdef const int32_t[::1] cs = child_start, cl = child_list, bf = bfs
    cdef const int64_t[::1] pv = pri, kv = key
    cdef const double[:, ::1] dv = des, lv = lim, wv = wei, rv = req, uv = use
    cdef const double[::1] cv = cap
    cdef double[:, ::1] out = fair_share_out
    cdef double[::1] remv = rem, swv = share_w
    cdef unsigned char[::1] hv = has_rem
    cdef RemEntry* entries = <RemEntry*>malloc(sizeof(RemEntry) * (n + 1))
    if entries == NULL:
        raise MemoryError()
    try:
        with nogil:
            _divide_all(cs, cl, bf, pv, kv, dv, lv, wv, rv, uv, cv, k_value, out, remv, hv,
                        swv, entries)
    finally:
        free(entries)
    return fair_share_out


def aggregate_to_parents(parent, values):
    """Return a new float64[Q, R]: each row plus the sum of all its descendants' rows."""
    par = np.ascontiguousarray(parent, dtype=np.int32)
    if par.ndim != 1:
        raise ValueError("parent must be 1-D")
    cdef Py_ssize_t n = par.shape[0]
    out = np.array(values, dtype=np.float64, order="C", copy=True)
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(f"values must have shape ({n}, R)")
    _, _, bfs = _tree(par, np.zeros(n, dtype=np.int64))
    cdef const int32_t[::1] bf = bfs, pv = par
    cdef double[:, ::1] ov = out
    cdef Py_ssize_t i, c, q, p, n_res = out.shape[1]
    with nogil:
        for i in range(n - 1, -1, -1):
            q = bf[i]
            p = pv[q]
            if p >= 0:
                for c in range(n_res):
                    ov[p, c] += ov[q, c]
    return out


def allocatable_share(deserved, fair_share, limit, out):
    """ResourceShare.GetAllocatableShare elementwise: deserved -1 -> limit; else
    max(deserved, fair_share) capped by a finite limit. Writes into and returns ``out``."""
    des = np.ascontiguousarray(deserved, dtype=np.float64)
    fs = np.ascontiguousarray(fair_share, dtype=np.float64)
    lim = np.ascontiguousarray(limit, dtype=np.float64)
    if des.shape != fs.shape or des.shape != lim.shape or des.ndim != 2:
        raise ValueError("deserved, fair_share and limit must be 2-D of one shape")
    if (not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != des.shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError("out must be a writable C-contiguous float64 array like deserved")
    cdef const double[:, ::1] dv = des, fv = fs, lv = lim
    cdef double[:, ::1] ov = out
    cdef Py_ssize_t i, c
    cdef double a
    with nogil:
        for i in range(dv.shape[0]):
            for c in range(dv.shape[1]):
                if dv[i, c] == UNLIMITED:
                    ov[i, c] = lv[i, c]
                    continue
                a = dv[i, c] if dv[i, c] > fv[i, c] else fv[i, c]
                if lv[i, c] != UNLIMITED and lv[i, c] < a:
                    a = lv[i, c]
                ov[i, c] = a
    return out


def dominant_resource_share(allocated, allocatable_share, total, out):
    """QueueResourceShare.GetDominantResourceShare per queue row: max(0, max over resources of
    allocated / allocatable), allocatable -1 -> total, allocatable 0 -> allocated * 1000."""
    al = np.ascontiguousarray(allocated, dtype=np.float64)
    sh = np.ascontiguousarray(allocatable_share, dtype=np.float64)
    tot = np.ascontiguousarray(total, dtype=np.float64)
    if al.ndim != 2 or sh.shape != al.shape or tot.shape != (al.shape[1],):
        raise ValueError("allocated/allocatable_share must be [Q, R] and total [R]")
    if (not isinstance(out, np.ndarray) or out.dtype != np.float64
            or out.shape != (al.shape[0],) or not out.flags.c_contiguous
            or not out.flags.writeable):
        raise ValueError("out must be a writable contiguous float64 array of shape (Q,)")
    cdef const double[:, ::1] av = al, sv = sh
    cdef const double[::1] tv = tot
    cdef double[::1] ov = out
    cdef Py_ssize_t i, c
    cdef double best, a, v
    with nogil:
        for i in range(av.shape[0]):
            best = 0.0
            for c in range(av.shape[1]):
                a = sv[i, c]
                if a == UNLIMITED:
                    a = tv[c]
                if a == 0:
                    v = av[i, c] * NO_FAIR_SHARE_DRF_MULTIPLIER
                else:
                    v = av[i, c] / a
                if v > best:
                    best = v
            ov[i] = best
    return out
