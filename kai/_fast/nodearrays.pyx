# cython: language_level=3
"""Charge / uncharge pod requests against node columns. See nodearrays.pxd for shapes;
reference/nodearrays.py is the readable twin."""
import numpy as np


cdef void charge_one(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail,
                     int i, const double[::1] req, double sign, bint is_releasing) noexcept nogil:
    cdef Py_ssize_t c
    cdef double r
    for c in range(req.shape[0]):
        r = req[c]
        if r == 0:
            continue
        idle[c, i] -= sign * r
        if is_releasing:
            releasing[c, i] += sign * r
        avail[c, i] = idle[c, i] + releasing[c, i]


cdef _check(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail, Py_ssize_t width):
    if releasing.shape[0] != idle.shape[0] or avail.shape[0] != idle.shape[0] \
            or releasing.shape[1] != idle.shape[1] or avail.shape[1] != idle.shape[1]:
        raise ValueError("idle, releasing and avail must have the same (R, N) shape")
    if width > idle.shape[0]:
        raise ValueError(f"request of {width} columns for {idle.shape[0]} resource rows")


def charge(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail, int i,
           const double[::1] req, double sign, bint is_releasing):
    """Charge (sign=+1) or uncharge (sign=-1) one pod's request on node column ``i``."""
    _check(idle, releasing, avail, req.shape[0])
    if not 0 <= i < idle.shape[1]:
        raise ValueError(f"node column {i} outside [0, {idle.shape[1]})")
    with nogil:
        charge_one(idle, releasing, avail, i, req, sign, is_releasing)


def charge_rows(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail,
                const int[::1] idx, const double[:, ::1] table, const int[::1] rid,
                const unsigned char[::1] rel, double sign):
    """Charge (sign=+1) or uncharge (sign=-1) many pods at once, in order: pod ``p`` puts request
    row ``rid[p]`` of ``table`` on node column ``idx[p]`` (skipped when ``idx[p] < 0``). A bulk
    load's requests are a few shared arrays, so a million pods need a few rows of ``table``,
    not a copy per pod."""
    cdef Py_ssize_t p
    _check(idle, releasing, avail, table.shape[1])
    if rid.shape[0] != idx.shape[0] or rel.shape[0] != idx.shape[0]:
        raise ValueError("idx, rid and rel must have one entry per pod")
    if idx.shape[0]:
        if np.asarray(idx).max() >= idle.shape[1]:
            raise ValueError(f"a node column is outside [0, {idle.shape[1]})")
        if np.asarray(rid).min() < 0 or np.asarray(rid).max() >= table.shape[0]:
            raise ValueError(f"a request row is outside [0, {table.shape[0]})")
    with nogil:
        for p in range(idx.shape[0]):
            if idx[p] >= 0:
                charge_one(idle, releasing, avail, idx[p], table[rid[p]], sign, rel[p])
