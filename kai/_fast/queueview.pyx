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


cdef class QueueRows:
    def __init__(self, alloc, alloc_np, fair, deserved, share, denom):
        q = alloc.shape[0] if isinstance(alloc, np.ndarray) and alloc.ndim == 2 else -1
        self.alloc = _rows(alloc, "alloc", q)
        self.alloc_np = _rows(alloc_np, "alloc_np", q)
        self.fair = _rows(fair, "fair", q)
        self.deserved = _rows(deserved, "deserved", q)
        self.share = _rows(share, "share", q)
        self.denom = _rows(denom, "denom", q)
        self.n_rows = q
        self.alloc_v, self.alloc_np_v, self.fair_v = self.alloc, self.alloc_np, self.fair
        self.deserved_v, self.share_v, self.denom_v = self.deserved, self.share, self.denom

    def stats(self, Py_ssize_t i, double r0, double r1, double r2):
        """(over, starved, zero, drs with the request, drs) of row ``i`` (see the .pxd)."""
        if i < 0 or i >= self.n_rows:
            raise IndexError(f"queue row {i} outside [0, {self.n_rows})")
        cdef double a0 = self.alloc_v[i, 0], a1 = self.alloc_v[i, 1], a2 = self.alloc_v[i, 2]
        cdef bint over = (self.fair_v[i, 0] < a0 and self.fair_v[i, 1] < a1 and self.fair_v[i, 2] < a2)
        cdef double w0 = a0 + r0, w1 = a1 + r1, w2 = a2 + r2
        cdef bint starved = (_le(w0, self.deserved_v[i, 0]) and _le(w1, self.deserved_v[i, 1])
                             and _le(w2, self.deserved_v[i, 2]))
        cdef bint zero = ((self.share_v[i, 0] == 0 and w0 > 0) or (self.share_v[i, 1] == 0 and w1 > 0)
                          or (self.share_v[i, 2] == 0 and w2 > 0))
        cdef double n0 = self.denom_v[i, 0], n1 = self.denom_v[i, 1], n2 = self.denom_v[i, 2]
        cdef double best = 0.0, v
        v = _ratio(w0, n0)
        if v > best:
            best = v
        v = _ratio(w1, n1)
        if v > best:
            best = v
        v = _ratio(w2, n2)
        if v > best:
            best = v
        cdef double drs_job = best
        best = 0.0
        v = _ratio(a0, n0)
        if v > best:
            best = v
        v = _ratio(a1, n1)
        if v > best:
            best = v
        v = _ratio(a2, n2)
        if v > best:
            best = v
        return (over, starved, zero, drs_job, best)

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
