# cython: language_level=3
"""Topology-domain constraints (inter-pod affinity, topology spread, host ports) for the
placement kernel. See domains.pxd for shapes and semantics; reference/domains.py is the
readable twin."""
import numpy as np
cimport numpy as cnp
from libc.math cimport log, floor, INFINITY

cnp.import_array()

KIND_ANTI = ANTI
KIND_AFFINITY = AFFINITY
KIND_SPREAD = SPREAD
KIND_SCORE = SCORE
KIND_SPREAD_SCORE = SPREAD_SCORE


cdef class DomainConstraints:
    """The constraints of one task class over N nodes; ``counts`` is the class's own copy
    (placements charge it), ``counts_array`` shows it to Python."""

    def __init__(self, Py_ssize_t n_nodes, list constraints, bint bootstrap=False):
        """``constraints``: dicts with ``dom`` (int32[N]), ``counts`` (float64[D]), ``kind``,
        optional ``self_inc`` (bool), ``weight``, ``max_skew``, ``min_domains``, ``elig``
        (uint8[N], SPREAD*), ``dom_elig`` (uint8[D], SPREAD). ``bootstrap``: the task matches all
        of its own AFFINITY terms. Everything is checked and copied here, once per task class."""
        cdef int c, n_c = len(constraints)
        self.n_c = n_c
        self.n_nodes = n_nodes
        self.bootstrap = bootstrap
        sizes = []
        for i, spec in enumerate(constraints):
            d = np.asarray(spec["dom"])
            if d.dtype != np.int32 or d.shape != (n_nodes,):
                raise ValueError(f"constraint {i}: dom must be int32[{n_nodes}]")
            cnt = np.asarray(spec["counts"], dtype=np.float64)
            if cnt.ndim != 1:
                raise ValueError(f"constraint {i}: counts must be 1-D")
            if d.size and int(d.max(initial=-1)) >= cnt.shape[0]:
                raise ValueError(f"constraint {i}: a domain id is outside its {cnt.shape[0]} counts")
            k = int(spec["kind"])
            if not 0 <= k <= 4:
                raise ValueError(f"constraint {i}: unknown kind {k}")
            sizes.append(cnt.shape[0])
        off = np.zeros(n_c + 1, dtype=np.int32)
        off[1:] = np.cumsum(sizes, dtype=np.int64).astype(np.int32) if n_c else []
        self.offset = off
        self.dom = np.ascontiguousarray(np.stack([np.asarray(s["dom"]) for s in constraints])
                                        if n_c else np.zeros((0, n_nodes), dtype=np.int32))
        self.counts_array = np.ascontiguousarray(np.concatenate([np.asarray(s["counts"], dtype=np.float64)
                                                                 for s in constraints]) if n_c else np.zeros(0))
        self.counts = self.counts_array
        self.kind = np.array([int(s["kind"]) for s in constraints], dtype=np.int32)
        self.has_scores = any(int(s["kind"]) in (SCORE, SPREAD_SCORE) for s in constraints)
        self.self_inc = np.array([1 if s.get("self_inc") else 0 for s in constraints], dtype=np.uint8)
        self.weight = np.array([float(s.get("weight", 0.0)) for s in constraints], dtype=np.float64)
        self.max_skew = np.array([int(s.get("max_skew", 1)) for s in constraints], dtype=np.int32)
        self.min_domains = np.array([int(s.get("min_domains", 1)) for s in constraints], dtype=np.int32)
        elig = np.ones((n_c, n_nodes), dtype=np.uint8)
        dom_elig = np.ones(int(off[n_c]), dtype=np.uint8)
        for i, s in enumerate(constraints):
            if s.get("elig") is not None:
                e = np.asarray(s["elig"], dtype=np.uint8)
                if e.shape != (n_nodes,):
                    raise ValueError(f"constraint {i}: elig must be uint8[{n_nodes}]")
                elig[i] = e
            if s.get("dom_elig") is not None:
                de = np.asarray(s["dom_elig"], dtype=np.uint8)
                if de.shape != (sizes[i],):
                    raise ValueError(f"constraint {i}: dom_elig must be uint8[{sizes[i]}]")
                dom_elig[off[i]:off[i + 1]] = de
        self.elig = elig
        self.dom_elig = dom_elig
        rel = np.zeros(int(off[n_c]))
        for i, s in enumerate(constraints):
            if s.get("releasing") is not None:
                r = np.asarray(s["releasing"], dtype=np.float64)
                if r.shape != (sizes[i],):
                    raise ValueError(f"constraint {i}: releasing must be float64[{sizes[i]}]")
                rel[off[i]:off[i + 1]] = r
        self.has_releasing = bool(rel.any())
        self.releasing = rel
        self.anti_only = n_c > 0 and not self.has_releasing and all(int(s["kind"]) == ANTI for s in constraints)
        arr = np.zeros(int(off[n_c]))
        for i, s in enumerate(constraints):
            if s.get("arriving") is not None:
                a = np.asarray(s["arriving"], dtype=np.float64)
                if a.shape != (sizes[i],):
                    raise ValueError(f"constraint {i}: arriving must be float64[{sizes[i]}]")
                arr[off[i]:off[i + 1]] = a
        self.arriving = arr
        self.raw = np.zeros(max(n_nodes, 1))
        self.seen = np.zeros(max(int(off[n_c]), 1), dtype=np.uint8)

    cdef double _min_eligible(self, int c, bint with_releasing=False) noexcept nogil:
        cdef int d, n_dom = 0
        cdef double lo = INFINITY, x
        for d in range(self.offset[c], self.offset[c + 1]):
            if self.dom_elig[d]:
                n_dom += 1
                x = self.counts[d] + (self.releasing[d] if with_releasing else 0.0)
                if x < lo:
                    lo = x
        if n_dom < self.min_domains[c] or n_dom == 0:
            return 0.0
        return lo

    cdef void evaluate(self, const unsigned char* base, unsigned char* out_mask, double* out_score,
                       unsigned char* out_wait) noexcept nogil:
        """out_mask[n] = base[n] and every filter passes; out_score[n] += the score kinds;
        out_wait[n] (when not NULL) = 1 where a filter passes only while evicted pods are gone."""
        cdef Py_ssize_t n, nn = self.n_nodes
        cdef int c, d, o, k
        cdef double lo, hi, total_aff = 0.0, total_rel = 0.0, w, mn, x, tw
        cdef bint any_aff = False, any_soft = False, boot, boot_strict
        for n in range(nn):
            out_mask[n] = base[n]
            if out_wait != NULL:
                out_wait[n] = 0
        for c in range(self.n_c):
            if self.kind[c] == AFFINITY:
                any_aff = True
                for d in range(self.offset[c], self.offset[c + 1]):
                    total_aff += self.counts[d]
                    total_rel += self.releasing[d]
        boot = any_aff and total_aff <= 0 and self.bootstrap
        # bootstrapping only because evicted pods are out of the counts: must wait for them
        boot_strict = boot and total_rel <= 0
        # filters
        for c in range(self.n_c):
            k = self.kind[c]
            o = self.offset[c]
            if k == ANTI:
                for n in range(nn):
                    d = self.dom[c, n]
                    if d >= 0:
                        if self.counts[o + d] > 0:
                            out_mask[n] = 0
                        elif out_wait != NULL and self.releasing[o + d] > 0:
                            out_wait[n] = 1
            elif k == AFFINITY:
                for n in range(nn):
                    d = self.dom[c, n]
                    if d < 0 or (not boot and self.counts[o + d] <= 0):
                        out_mask[n] = 0
                    elif out_wait != NULL and (
                            (self.counts[o + d] <= 0 and not boot_strict) or
                            (self.counts[o + d] > 0 and self.counts[o + d] - self.arriving[o + d] <= 0)):
                        out_wait[n] = 1
            elif k == SPREAD:
                mn = self._min_eligible(c)
                x = self._min_eligible(c, True)
                for n in range(nn):
                    d = self.dom[c, n]
                    if d < 0 or self.counts[o + d] + self.self_inc[c] - mn > self.max_skew[c]:
                        out_mask[n] = 0
                    elif out_wait != NULL and self.has_releasing and \
                            self.counts[o + d] + self.releasing[o + d] + self.self_inc[c] - x > self.max_skew[c]:
                        out_wait[n] = 1
        # scores
        for c in range(self.n_c):
            k = self.kind[c]
            o = self.offset[c]
            if k == SCORE:
                w = self.weight[c]
                for n in range(nn):
                    d = self.dom[c, n]
                    if d >= 0 and out_mask[n]:
                        out_score[n] += w * self.counts[o + d]
            elif k == SPREAD_SCORE:
                any_soft = True
        if not any_soft:
            return
        # soft topology spread, normalized over the passing nodes (kube-scheduler's NormalizeScore)
        for n in range(nn):
            self.raw[n] = 0.0
        for c in range(self.n_c):
            if self.kind[c] != SPREAD_SCORE:
                continue
            o = self.offset[c]
            for d in range(o, self.offset[c + 1]):
                self.seen[d] = 0
            tw = 0.0
            for n in range(nn):
                d = self.dom[c, n]
                if out_mask[n] and d >= 0 and not self.seen[o + d]:
                    self.seen[o + d] = 1
                    tw += 1.0
            tw = log(tw + 2.0)
            for n in range(nn):
                if not out_mask[n]:
                    continue
                d = self.dom[c, n]
                if d < 0 or self.raw[n] < 0:
                    self.raw[n] = -1.0          # lacks a key: ignored (scores 0)
                    continue
                self.raw[n] += self.counts[o + d] * tw + (self.max_skew[c] - 1)
        lo = INFINITY
        hi = 0.0
        for n in range(nn):
            if out_mask[n] and self.raw[n] >= 0:
                x = floor(self.raw[n] + 0.5)
                self.raw[n] = x
                if x < lo:
                    lo = x
                if x > hi:
                    hi = x
        w = -INFINITY
        for c in range(self.n_c):
            if self.kind[c] == SPREAD_SCORE and self.weight[c] > w:
                w = self.weight[c]
        for n in range(nn):
            if not out_mask[n] or self.raw[n] < 0:
                continue
            if hi == 0:
                out_score[n] += w * 100.0
            else:
                out_score[n] += w * floor(100.0 * (hi + lo - self.raw[n]) / hi)

    cdef bint anti_ok(self, int node) noexcept nogil:
        """ANTI filters only: does ``node`` pass them all?"""
        cdef int c, d
        for c in range(self.n_c):
            d = self.dom[c, node]
            if d >= 0 and self.counts[self.offset[c] + d] > 0:
                return False
        return True

    cdef void charge(self, int node) noexcept nogil:
        """The task was placed on ``node``: add it to its domains where it matches itself."""
        cdef int c, d
        for c in range(self.n_c):
            if not self.self_inc[c]:
                continue
            d = self.dom[c, node]
            if d < 0:
                continue
            if (self.kind[c] == SPREAD or self.kind[c] == SPREAD_SCORE) and not self.elig[c, node]:
                continue
            self.counts[self.offset[c] + d] += 1.0

    def filter_and_score(self, const unsigned char[::1] base, double[::1] out_score, wait=None):
        """Python entry for tests, explanations and one-task placements: the mask (uint8[N])
        after the filters, with the score kinds added to ``out_score`` (float64[N]); ``wait``
        (uint8[N], optional) receives the nodes that must wait for evicted pods."""
        if base.shape[0] != self.n_nodes or out_score.shape[0] != self.n_nodes:
            raise ValueError("base and out_score must have one entry per node")
        out = np.zeros(self.n_nodes, dtype=np.uint8)
        cdef unsigned char[::1] o = out
        cdef unsigned char[::1] w
        cdef unsigned char* wp = NULL
        if wait is not None:
            w = wait
            if w.shape[0] != self.n_nodes:
                raise ValueError("wait must have one entry per node")
            if self.n_nodes:
                wp = &w[0]
        if self.n_nodes:
            with nogil:
                self.evaluate(&base[0], &o[0], &out_score[0], wp)
        return out

    def place_at(self, int node):
        """Python entry: charge a placement on ``node`` (as the kernel does)."""
        if not 0 <= node < self.n_nodes:
            raise ValueError("node outside the arrays")
        self.charge(node)
