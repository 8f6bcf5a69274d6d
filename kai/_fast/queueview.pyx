# cython: language_level=3
"""Queue-order views and allocation charges per queue row (see queueview.pxd).

The proportion plugin's hot per-job bookkeeping: every allocate/deallocate event charges
the job's queue path (``charge``), and every pop of the job queue compares queues by their
view with the head job (``stats``). Both were Python loops over three floats per row; here
they are one call each, with the same float operations in the same order, so the answers
are identical (``kai._fast.reference.queueview`` is the readable twin the tests compare).
"""
import numpy as np

cdef double TOLERANCE = 1e-9
cdef double UNLIMITED = -1.0
cdef double NO_FAIR_SHARE_DRF_MULTIPLIER = 1000.0


def _rows(a, str name, Py_ssize_t q):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.ndim != 2 or a.shape[1] != 3 \
            or a.shape[0] != q or not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected C-contiguous float64[{q}, 3]")
    return a


cdef inline bint _le(double w, double d) noexcept:
    # less_equal for one resource, deserved -1 unlimited, 1e-9 tolerance (QueueOrder.stats)
    return d == UNLIMITED or (w != UNLIMITED and (w <= d or abs(w - d) <= TOLERANCE))


cdef inline double _ratio(double a, double n) noexcept:
    return a * NO_FAIR_SHARE_DRF_MULTIPLIER if n == 0 else a / n


cdef inline double _max3(double x, double y, double z) noexcept:
    # max(0, x, y, z) in the order the Python loop takes them (strictly greater replaces)
    cdef double best = 0.0
    if x > best:
        best = x
    if y > best:
        best = y
    if z > best:
        best = z
    return best


cdef inline int _cmp_quantity(double a, double b) noexcept:
    # resource_share.compareQuantities: -1 is unlimited (largest), equal within 1e-9
    if a == UNLIMITED:
        return 0 if b == UNLIMITED else 1
    if b == UNLIMITED:
        return -1
    if not (a <= b or abs(a - b) <= TOLERANCE):
        return 1
    if not (b <= a or abs(a - b) <= TOLERANCE):
        return -1
    return 0


cdef class QueueRows:
    def __init__(self, alloc, alloc_np, fair, deserved, share, denom, limit=None):
        q = alloc.shape[0] if isinstance(alloc, np.ndarray) and alloc.ndim == 2 else -1
        self.alloc = _rows(alloc, "alloc", q)
        self.alloc_np = _rows(alloc_np, "alloc_np", q)
        self.fair = _rows(fair, "fair", q)
        self.deserved = _rows(deserved, "deserved", q)
        self.share = _rows(share, "share", q)
        self.denom = _rows(denom, "denom", q)
        self.limit = _rows(limit, "limit", q) if limit is not None else np.full((max(q, 0), 3), UNLIMITED)
        self.n_rows = q
        self.limit_v = self.limit
        self.alloc_v, self.alloc_np_v, self.fair_v = self.alloc, self.alloc_np, self.fair
        self.deserved_v, self.share_v, self.denom_v = self.deserved, self.share, self.denom

    def stats(self, Py_ssize_t i, double r0, double r1, double r2):
        """(over, starved, zero, drs with the request, drs) of row ``i`` (see the .pxd)."""
        if i < 0 or i >= self.n_rows:
            raise IndexError(f"queue row {i} outside [0, {self.n_rows})")
        cdef bint over, starved, zero
        cdef double drs_job, drs
        self._stats(i, r0, r1, r2, &over, &starved, &zero, &drs_job, &drs)
        return (over, starved, zero, drs_job, drs)

    def compare(self, Py_ssize_t li, Py_ssize_t ri, double l0, double l1, double l2,
                double r0, double r1, double r2, long long lprio, long long rprio):
        """Rules 1-7 of the queue order (QueueOrder.compare without victims) for rows ``li`` and
        ``ri`` with head-job init requests (l0, l1, l2) and (r0, r1, r2): -1 left first, 1
        right first, 0 undecided (the caller then compares creation times)."""
        if li < 0 or li >= self.n_rows or ri < 0 or ri >= self.n_rows:
            raise IndexError(f"queue rows {li}, {ri} outside [0, {self.n_rows})")
        cdef bint lover, lst, lz, rover, rst, rz
        cdef double ldj, ld, rdj, rd
        self._stats(li, l0, l1, l2, &lover, &lst, &lz, &ldj, &ld)
        self._stats(ri, r0, r1, r2, &rover, &rst, &rz, &rdj, &rd)
        if lover != rover:
            return 1 if lover else -1
        if lst != rst:
            return -1 if lst else 1
        if lprio != rprio:
            return -1 if lprio > rprio else 1
        if lz != rz:
            return 1 if lz else -1
        if ldj != rdj:
            return -1 if ldj < rdj else 1
        if ld != rd:
            return -1 if ld < rd else 1
        cdef Py_ssize_t c
        cdef bint differ = False, l_le = True, r_le = True
        for c in range(3):
            if self.share_v[li, c] != self.share_v[ri, c]:
                differ = True
            if _cmp_quantity(self.share_v[li, c], self.share_v[ri, c]) > 0:
                l_le = False
            if _cmp_quantity(self.share_v[ri, c], self.share_v[li, c]) > 0:
                r_le = False
        if differ:
            if l_le and not r_le:
                return -1
            if r_le and not l_le:
                return 1
        return 0

    cdef void _stats(self, Py_ssize_t i, double r0, double r1, double r2, bint* over, bint* starved,
                     bint* zero, double* drs_job, double* drs) noexcept:
        cdef double a0 = self.alloc_v[i, 0], a1 = self.alloc_v[i, 1], a2 = self.alloc_v[i, 2]
        over[0] = (self.fair_v[i, 0] < a0 and self.fair_v[i, 1] < a1 and self.fair_v[i, 2] < a2)
        cdef double w0 = a0 + r0, w1 = a1 + r1, w2 = a2 + r2
        starved[0] = (_le(w0, self.deserved_v[i, 0]) and _le(w1, self.deserved_v[i, 1])
                      and _le(w2, self.deserved_v[i, 2]))
        zero[0] = ((self.share_v[i, 0] == 0 and w0 > 0) or (self.share_v[i, 1] == 0 and w1 > 0)
                   or (self.share_v[i, 2] == 0 and w2 > 0))
        cdef double n0 = self.denom_v[i, 0], n1 = self.denom_v[i, 1], n2 = self.denom_v[i, 2]
        drs_job[0] = _max3(_ratio(w0, n0), _ratio(w1, n1), _ratio(w2, n2))
        drs[0] = _max3(_ratio(a0, n0), _ratio(a1, n1), _ratio(a2, n2))

    def charge(self, rows, double v0, double v1, double v2, double sign, bint nonpreemptible):
        """Add (sign > 0) or subtract v to ``rows`` of alloc (and alloc_np if nonpreemptible)."""
        cdef Py_ssize_t r
        for r in rows:
            if r < 0 or r >= self.n_rows:
                raise IndexError(f"queue row {r} outside [0, {self.n_rows})")
        for r in rows:
            if sign > 0:
                self.alloc_v[r, 0] += v0
                self.alloc_v[r, 1] += v1
                self.alloc_v[r, 2] += v2
                if nonpreemptible:
                    self.alloc_np_v[r, 0] += v0
                    self.alloc_np_v[r, 1] += v1
                    self.alloc_np_v[r, 2] += v2
            else:
                self.alloc_v[r, 0] -= v0
                self.alloc_v[r, 1] -= v1
                self.alloc_v[r, 2] -= v2
                if nonpreemptible:
                    self.alloc_np_v[r, 0] -= v0
                    self.alloc_np_v[r, 1] -= v1
                    self.alloc_np_v[r, 2] -= v2

    def first_over(self, rows, double r0, double r1, double r2, bint nonpreemptible):
        """-1 when the request fits every row of ``rows``; else 6 * k + 3 * kind + c of the
        first refusal (see the .pxd)."""
        cdef Py_ssize_t r, k = 0, c
        cdef double req[3]
        cdef double bound
        req[0] = r0
        req[1] = r1
        req[2] = r2
        for r in rows:
            if r < 0 or r >= self.n_rows:
                raise IndexError(f"queue row {r} outside [0, {self.n_rows})")
            for c in range(3):
                bound = self.limit_v[r, c]
                if req[c] > 0 and bound != UNLIMITED and self.alloc_v[r, c] + req[c] > bound + TOLERANCE:
                    return 6 * k + c
            if nonpreemptible:
                for c in range(3):
                    bound = self.deserved_v[r, c]
                    if req[c] > 0 and bound != UNLIMITED and self.alloc_np_v[r, c] + req[c] > bound + TOLERANCE:
                        return 6 * k + 3 + c
            k += 1
        return -1
