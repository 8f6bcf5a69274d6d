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
        (uint8[N], SPREAD*), ``dom_elig`` (uint8[D], SPREAD), ``releasing`` and ``arriving``
        (float64[D]). ``bootstrap``: the task matches all of its own AFFINITY terms. Everything
        is checked and copied here, once per task class (one pass over the specs)."""
        cdef int i, k, n_c = len(constraints)
        cdef Py_ssize_t total = 0, size
        self.n_c = n_c
        self.n_nodes = n_nodes
        self.bootstrap = bootstrap
        counts_list = []
        for spec in constraints:
            cnt = spec["counts"]
            if not isinstance(cnt, np.ndarray) or cnt.dtype != np.float64:
                cnt = np.asarray(cnt, dtype=np.float64)
            if cnt.ndim != 1:
                raise ValueError("constraint counts must be 1-D")
            counts_list.append(cnt)
            total += cnt.shape[0]
        off = np.empty(n_c + 1, dtype=np.int32)
        dom = np.empty((n_c, n_nodes), dtype=np.int32)
        kind = np.empty(n_c, dtype=np.int32)
        self_inc = np.zeros(n_c, dtype=np.uint8)
        weight = np.zeros(n_c)
        max_skew = np.ones(n_c, dtype=np.int32)
        min_domains = np.ones(n_c, dtype=np.int32)
        elig = None
        dom_elig = np.ones(total, dtype=np.uint8)
        rel = np.zeros(total)
        arr = np.zeros(total)
        has_scores = anti_only = False
        anti_only = n_c > 0
        o = 0
        for i in range(n_c):
            spec = constraints[i]
            size = counts_list[i].shape[0]
            off[i] = o
            d = spec["dom"]
            if not isinstance(d, np.ndarray) or d.dtype != np.int32 or d.shape[0] != n_nodes or d.ndim != 1:
                raise ValueError(f"constraint {i}: dom must be int32[{n_nodes}]")
            if n_nodes and d.max() >= size:
                raise ValueError(f"constraint {i}: a domain id is outside its {size} counts")
            dom[i] = d
            k = int(spec["kind"])
            if not 0 <= k <= 4:
                raise ValueError(f"constraint {i}: unknown kind {k}")
            kind[i] = k
            if k == SCORE or k == SPREAD_SCORE:
                has_scores = True
            if k != ANTI:
                anti_only = False
            if spec.get("self_inc"):
                self_inc[i] = 1
            if "weight" in spec:
                weight[i] = spec["weight"]
            if "max_skew" in spec:
                max_skew[i] = spec["max_skew"]
            if "min_domains" in spec:
                min_domains[i] = spec["min_domains"]
            e = spec.get("elig")
            if e is not None:
                if elig is None:
                    elig = np.ones((n_c, n_nodes), dtype=np.uint8)
                if np.shape(e) != (n_nodes,):
                    raise ValueError(f"constraint {i}: elig must be uint8[{n_nodes}]")
                elig[i] = e
            for name, target in (("dom_elig", dom_elig), ("releasing", rel), ("arriving", arr)):
                x = spec.get(name)
                if x is not None:
                    if np.shape(x) != (size,):
                        raise ValueError(f"constraint {i}: {name} must have {size} entries")
                    target[o:o + size] = x
            o += size
        off[n_c] = o
        self.offset = off
        self.dom = dom
        self.counts_array = np.concatenate(counts_list) if n_c else np.zeros(0)
        self.counts = self.counts_array
        self.kind = kind
        self.self_inc = self_inc
        self.weight = weight
        self.max_skew = max_skew
        self.min_domains = min_domains
        self.elig = elig if elig is not None else np.ones((n_c, n_nodes), dtype=np.uint8)
        self.dom_elig = dom_elig
        self.releasing = rel
        self.has_releasing = bool(rel.any())
        self.arriving = arr
        self.has_scores = has_scores
        self.anti_only = anti_only and not self.has_releasing
        self.raw = np.zeros(max(n_nodes, 1)) if has_scores else np.zeros(1)
        self.seen = np.zeros(max(total, 1), dtype=np.uint8)

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
