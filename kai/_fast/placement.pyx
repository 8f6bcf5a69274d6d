# cython: language_level=3
"""Node choice kernels. See placement.pxd for shapes and units; reference/placement.py
is the readable twin the tests compare against."""
import numpy as np
cimport numpy as cnp
from libc.math cimport INFINITY
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

from kai._fast.domains cimport DomainConstraints

cnp.import_array()

cdef double EPS = 1e-9


def _c(a, dtype, name):
    """``a`` as a C-contiguous array of ``dtype`` without copying, or a ValueError naming it."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous")
    return a


cdef class NodeArrays:
    """The node arrays one session's kernels work on (see placement.pxd), checked once.

    Holds the caller's arrays themselves (no copy): kernels write idle / releasing / avail
    and the device rows in place, and so may the caller between calls."""

    def __init__(self, allocatable, idle, releasing, avail, gpu_capacity, name_rank,
                 dev_used=None, dev_alloc=None, dev_rel=None, dev_from_rel=None, int gpu_col=2):
        f8, i4, u1 = np.float64, np.int32, np.uint8
        self.allocatable = _c(allocatable, f8, "allocatable")
        if self.allocatable.ndim != 2:
            raise ValueError("allocatable: expected shape (R, N)")
        r, n = self.allocatable.shape
        for name, a in (("idle", idle), ("releasing", releasing), ("avail", avail)):
            _c(a, f8, name)
            if a.shape != (r, n):
                raise ValueError(f"{name}: shape {a.shape}, expected {(r, n)} like allocatable")
        self.idle, self.releasing, self.avail = idle, releasing, avail
        for name, a, dt in (("gpu_capacity", gpu_capacity, f8), ("name_rank", name_rank, i4)):
            _c(a, dt, name)
            if a.shape != (n,):
                raise ValueError(f"{name}: shape {a.shape}, expected ({n},)")
        self.gpu_capacity, self.name_rank = gpu_capacity, name_rank
        if dev_used is None:
            dev_used, dev_alloc, dev_rel = (np.zeros((n, 0)) for _ in range(3))
            dev_from_rel = np.zeros((n, 0), dtype=u1)
        d = dev_used.shape[1] if getattr(dev_used, "ndim", 0) == 2 else -1
        for name, a, dt in (("dev_used", dev_used, f8), ("dev_alloc", dev_alloc, f8),
                            ("dev_rel", dev_rel, f8), ("dev_from_rel", dev_from_rel, u1)):
            _c(a, dt, name)
            if a.shape != (n, d):
                raise ValueError(f"{name}: shape {a.shape}, expected ({n}, D) like dev_used {(n, d)}")
        self.dev_used, self.dev_alloc, self.dev_rel, self.dev_from_rel = dev_used, dev_alloc, dev_rel, dev_from_rel
        if not 0 <= gpu_col < r:
            raise ValueError(f"gpu_col {gpu_col} outside the {r} resource rows")
        self.n_res, self.n_nodes, self.n_dev, self.gpu_col = r, n, d, gpu_col
        self.allocatable_v, self.idle_v, self.releasing_v, self.avail_v = allocatable, idle, releasing, avail
        self.gpu_capacity_v, self.name_rank_v = gpu_capacity, name_rank
        self.dev_used_v, self.dev_alloc_v, self.dev_rel_v = dev_used, dev_alloc, dev_rel
        self.dev_from_rel_v = dev_from_rel


cdef class Placements:
    """Output of ``place`` / ``NodeQueue.place`` for up to ``capacity`` tasks (see placement.pxd)."""

    def __init__(self, Py_ssize_t capacity, Py_ssize_t n_res):
        if capacity < 0 or n_res < 1:
            raise ValueError("capacity must be >= 0 and n_res >= 1")
        self.capacity = capacity
        self.nodes = np.full(capacity, -1, dtype=np.int32)
        self.pipelined = np.zeros(capacity, dtype=np.uint8)
        self.undo = np.zeros((capacity, 2, n_res))
        self.nodes_v, self.pipelined_v, self.undo_v = self.nodes, self.pipelined, self.undo

    def take(self, Py_ssize_t i):
        """(node column, pipelined, a copy of the undo rows float64[2, R]) of task ``i``: what
        a caller that reuses this buffer for the next task keeps of this one."""
        if i < 0 or i >= self.capacity:
            raise IndexError(f"placement {i} outside the {self.capacity} of this buffer")
        cdef Py_ssize_t r = self.undo_v.shape[2]
        cdef cnp.npy_intp dims[2]
        dims[0] = 2
        dims[1] = r
        cdef cnp.ndarray rows = cnp.PyArray_SimpleNew(2, dims, cnp.NPY_FLOAT64)
        memcpy(cnp.PyArray_DATA(rows), &self.undo_v[i, 0, 0], 2 * r * sizeof(double))
        return int(self.nodes_v[i]), self.pipelined_v[i] != 0, rows


def check_task(NodeArrays a, mask, extra_score, req, req_cols, int score_col=0):
    """ValueError unless the task's arrays fit ``a``: uint8 mask[N], float64 extra[N] or None,
    float64 req[R], int32 req_cols in [0, R), 0 <= score_col < R."""
    _c(mask, np.uint8, "mask")
    if mask.shape != (a.n_nodes,):
        raise ValueError(f"mask: shape {mask.shape}, expected ({a.n_nodes},)")
    if extra_score is not None:
        _c(extra_score, np.float64, "extra_score")
        if extra_score.shape != (a.n_nodes,):
            raise ValueError(f"extra_score: shape {extra_score.shape}, expected ({a.n_nodes},)")
    _c(req, np.float64, "req")
    if req.shape != (a.n_res,):
        raise ValueError(f"req: shape {req.shape}, expected ({a.n_res},)")
    _c(req_cols, np.int32, "req_cols")
    if req_cols.ndim != 1 or (req_cols.size and (req_cols.min() < 0 or req_cols.max() >= a.n_res)):
        raise ValueError(f"req_cols: expected int32 columns in [0, {a.n_res})")
    if not 0 <= score_col < a.n_res:
        raise ValueError(f"score_col {score_col} outside the {a.n_res} resource rows")


cdef int best_node(const double[:, ::1] allocatable, const double[:, ::1] idle,
                   const double[:, ::1] avail, const double[::1] gpu_capacity,
                   const unsigned char[::1] mask, const int[::1] name_rank,
                   const double[::1] extra_score, bint has_extra,
                   const double[::1] req, const int[::1] req_cols,
                   int score_col, int strategy, bint cpu_only, int gpu_col,
                   bint allow_pipeline, unsigned char[::1] scratch,
                   bint* pipelined, const unsigned char* wait=NULL) noexcept nogil:
    """Index of the best node for ``req`` or -1; sets ``pipelined`` when it fits only on releasing
    (or, ``wait`` given, the node's constraints hold only once evicted pods are gone).

    Works column by column over raw pointers so the feasibility passes are contiguous,
    branch-free loops the compiler vectorizes; scores are computed only for feasible nodes.
    """
    cdef Py_ssize_t n_nodes = mask.shape[0]
    cdef Py_ssize_t n, k
    cdef int c
    cdef double r, lo = INFINITY, hi = 0.0, x, cap, score, best_score = -INFINITY, span
    cdef int best = -1, best_rank = 0
    cdef const double* col
    cdef const unsigned char* m
    cdef unsigned char* ok
    cdef unsigned char* on_idle
    cdef const double* s_alloc
    cdef const double* s_avail
    cdef const double* g_alloc
    cdef const double* gcap
    cdef const int* rank
    cdef const double* extra
    if n_nodes == 0:
        return -1
    m = &mask[0]
    ok = &scratch[0]                 # fits on idle + releasing
    on_idle = &scratch[n_nodes]      # fits on idle alone
    s_alloc = &allocatable[score_col, 0]
    s_avail = &avail[score_col, 0]
    g_alloc = &allocatable[gpu_col, 0]
    gcap = &gpu_capacity[0]
    rank = &name_rank[0]
    extra = &extra_score[0]

    for n in range(n_nodes):
        ok[n] = m[n]
        on_idle[n] = 1
        if wait != NULL and wait[n]:
            on_idle[n] = 0
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


def place(NodeArrays a, mask, extra_score, req, req_cols, int score_col, int strategy,
          bint cpu_only, bint allow_pipeline, Placements out, Py_ssize_t start=0,
          DomainConstraints constraints=None):
    """Place up to ``out.capacity - start`` identical tasks one after another, updating ``a``'s
    idle / releasing / avail in place; results go to ``out`` from index ``start``.

    Each task takes the best node given the placements before it. Returns how many were
    placed (stops at the first that fits nowhere). Arguments are checked against ``a``
    (``check_task``) before the one nogil loop. ``constraints`` (kai._fast.domains): topology
    domain filters and scores re-evaluated before each decision and charged after it, so the
    run's own earlier placements count for its later ones.
    """
    check_task(a, mask, extra_score, req, req_cols, score_col)
    if not 0 <= start <= out.capacity or out.undo.shape[2] != a.n_res:
        raise ValueError("out: wrong width for these node arrays, or start outside it")
    if constraints is not None and constraints.n_nodes != a.n_nodes:
        raise ValueError("constraints: built for another number of nodes")
    cdef const unsigned char[::1] m = mask
    cdef const double[::1] rq = req
    cdef const int[::1] rc = req_cols
    cdef Py_ssize_t n_nodes = a.n_nodes
    cdef unsigned char[::1] scratch = np.empty(max(2 * n_nodes, 2), dtype=np.uint8)
    cdef const double[::1] extra
    cdef bint has_extra = extra_score is not None
    cdef int i, node, n_res = <int>a.n_res, gpu_col = a.gpu_col
    cdef Py_ssize_t c, k = out.capacity - start
    cdef bint pipelined = False
    cdef int placed = 0
    cdef double[:, ::1] idle = a.idle_v, releasing = a.releasing_v, avail = a.avail_v
    cdef int[::1] out_nodes = out.nodes_v
    cdef unsigned char[::1] out_pipe = out.pipelined_v
    cdef double[:, :, ::1] undo = out.undo_v
    cdef bint has_c = constraints is not None and constraints.n_c > 0
    cdef unsigned char[::1] cmask, cwait
    cdef double[::1] cscore, base_score
    extra = extra_score if has_extra else np.zeros(1, dtype=np.float64)
    if has_c:
        cmask = np.empty(max(n_nodes, 1), dtype=np.uint8)
        cwait = np.zeros(max(n_nodes, 1), dtype=np.uint8)
        cscore = np.zeros(max(n_nodes, 1))
        base_score = np.array(extra_score, dtype=np.float64) if has_extra else np.zeros(max(n_nodes, 1))
    with nogil:
        for i in range(<int>k):
            if has_c:
                if n_nodes == 0:
                    break
                if constraints.has_scores or i == 0:
                    cscore[:] = base_score
                constraints.evaluate(&m[0], &cmask[0], &cscore[0], &cwait[0])
                node = best_node(a.allocatable_v, idle, avail, a.gpu_capacity_v, cmask, a.name_rank_v,
                                 cscore, True, rq, rc, score_col, strategy, cpu_only, gpu_col, allow_pipeline,
                                 scratch, &pipelined, &cwait[0])
            else:
                node = best_node(a.allocatable_v, idle, avail, a.gpu_capacity_v, m, a.name_rank_v, extra,
                                 has_extra, rq, rc, score_col, strategy, cpu_only, gpu_col, allow_pipeline,
                                 scratch, &pipelined)
            if node < 0:
                break
            if has_c:
                constraints.charge(node)
            for c in range(n_res):
                undo[start + i, 0, c] = idle[c, node]
                undo[start + i, 1, c] = releasing[c, node]
            _take(idle, releasing, avail, rq, rc, node, pipelined)
            out_nodes[start + i] = node
            out_pipe[start + i] = pipelined
            placed += 1
    return placed


def fit_counts(NodeArrays a, mask, req, req_cols, long[::1] out_short):
    """For explanations: ``out_short[k]`` = masked nodes lacking column ``req_cols[k]`` on idle+releasing.

    Returns the number of masked nodes that fit. Called once per failed job, not per task.
    """
    check_task(a, mask, None, req, req_cols)
    if out_short.shape[0] < req_cols.shape[0]:
        raise ValueError("out_short must hold one count per req_cols entry")
    cdef Py_ssize_t n, k
    cdef int c, fits = 0
    cdef bint ok
    cdef const double[:, ::1] avail = a.avail_v
    cdef const unsigned char[::1] m = mask
    cdef const double[::1] rq = req
    cdef const int[::1] rc = req_cols
    for k in range(rc.shape[0]):
        out_short[k] = 0
    with nogil:
        for n in range(m.shape[0]):
            if not m[n]:
                continue
            ok = True
            for k in range(rc.shape[0]):
                c = rc[k]
                if avail[c, n] < rq[c] - EPS:
                    out_short[k] += 1
                    ok = False
            if ok:
                fits += 1
    return fits


STRATEGY_BINPACK = BINPACK
STRATEGY_SPREAD = SPREAD


cdef class TouchLog:
    """Session-wide record of node columns changed since the session opened."""

    def __cinit__(self, Py_ssize_t n_nodes):
        self.n_nodes = n_nodes
        self.ver = <unsigned int*>malloc(max(n_nodes, 1) * sizeof(unsigned int))
        self.cap = 1024
        self.log = <int*>malloc(self.cap * sizeof(int))
        self.length = 0
        if self.ver == NULL or self.log == NULL:
            raise MemoryError()
        for i in range(n_nodes):
            self.ver[i] = 0

    def __dealloc__(self):
        free(self.ver)
        free(self.log)

    cdef void touch(self, int node) noexcept nogil:
        cdef int* grown
        if self.length == self.cap:
            grown = <int*>realloc(self.log, 2 * self.cap * sizeof(int))
            if grown == NULL:
                return      # keeps versions right; queues then re-scan (see NodeQueue.sync)
            self.log = grown
            self.cap *= 2
        self.log[self.length] = node
        self.length += 1
        self.ver[node] += 1

    def mark(self, int node):
        """Record that node ``node``'s columns were changed outside the kernels (undo, evict)."""
        self.touch(node)

    def __len__(self):
        return self.length


cdef inline bint _less(QEntry* a, QEntry* b) noexcept nogil:
    if a.k1 != b.k1:
        return a.k1 < b.k1
    if a.k2 != b.k2:
        return a.k2 < b.k2
    return a.rank < b.rank


cdef class NodeQueue:
    """Feasible nodes of one task class, best first, kept current through a TouchLog.

    Valid only while no plugin adds per-node scores (the caller checks). ``exact`` is False
    when the class has feasible nodes without the scored resource under binpack (KAI gives
    those the same score as the emptiest node, which no static key can express); the caller
    then uses the full-scan kernel instead.
    """
    cdef QEntry* heap
    cdef Py_ssize_t size, cap
    cdef Py_ssize_t synced
    cdef unsigned int* pushed      # version+1 at which each node was last pushed (0 = never)
    cdef double[::1] req
    cdef int[::1] req_cols
    cdef const unsigned char[::1] mask
    cdef public object mask_ref
    cdef int score_col, strategy, gpu_col
    cdef bint cpu_only, allow_pipeline
    cdef readonly bint exact
    cdef Py_ssize_t n_nodes

    def __cinit__(self, const unsigned char[::1] mask, const double[::1] req, const int[::1] req_cols,
                  int score_col, int strategy, bint cpu_only, int gpu_col, bint allow_pipeline):
        self.n_nodes = mask.shape[0]
        self.mask = mask
        self.req = np.array(req, dtype=np.float64)
        self.req_cols = np.array(req_cols, dtype=np.int32)
        # checked once here: ``place`` then only checks that req's width is the arrays' one
        if self.req_cols.shape[0] and (min(self.req_cols) < 0 or max(self.req_cols) >= self.req.shape[0]):
            raise ValueError("req_cols outside the request's resource rows")
        if not 0 <= score_col < self.req.shape[0] or not 0 <= gpu_col < self.req.shape[0]:
            raise ValueError("score_col / gpu_col outside the request's resource rows")
        self.score_col = score_col
        self.strategy = strategy
        self.cpu_only = cpu_only
        self.gpu_col = gpu_col
        self.allow_pipeline = allow_pipeline
        self.cap = max(self.n_nodes, 16)
        self.heap = <QEntry*>malloc(self.cap * sizeof(QEntry))
        self.pushed = <unsigned int*>malloc(max(self.n_nodes, 1) * sizeof(unsigned int))
        if self.heap == NULL or self.pushed == NULL:
            raise MemoryError()
        self.size = 0
        self.synced = -1
        self.exact = True

    def __dealloc__(self):
        free(self.heap)
        free(self.pushed)

    cdef bint _key(self, const double[:, ::1] allocatable, const double[:, ::1] idle,
                   const double[:, ::1] avail, const double[::1] gpu_capacity,
                   const int[::1] name_rank, int n, QEntry* e) noexcept nogil:
        cdef Py_ssize_t k
        cdef int c
        cdef bint on_idle = True
        cdef double band, x, cap
        if not self.mask[n]:
            return False
        for k in range(self.req_cols.shape[0]):
            c = self.req_cols[k]
            if avail[c, n] < self.req[c] - EPS:
                return False
            if idle[c, n] < self.req[c] - EPS:
                on_idle = False
        if not on_idle and not self.allow_pipeline:
            return False
        band = 100.0 if on_idle else 0.0
        if self.cpu_only and allocatable[self.gpu_col, n] == 0:
            band += 10.0
        x = avail[self.score_col, n]
        if self.strategy == BINPACK:
            if allocatable[self.score_col, n] <= 0:
                self.exact = False
            e.k2 = x
        else:
            cap = gpu_capacity[n] if self.score_col == self.gpu_col else allocatable[self.score_col, n]
            e.k2 = -(x / cap) if cap > 0 else 0.0
        e.k1 = -band
        e.rank = name_rank[n]
        e.node = n
        return True

    cdef void _push(self, QEntry* e) noexcept nogil:
        cdef Py_ssize_t i, parent
        cdef QEntry* grown
        if self.size == self.cap:
            grown = <QEntry*>realloc(self.heap, 2 * self.cap * sizeof(QEntry))
            if grown == NULL:
                return
            self.heap = grown
            self.cap *= 2
        i = self.size
        self.size += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not _less(e, &self.heap[parent]):
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i] = e[0]

    cdef void _pop(self) noexcept nogil:
        cdef Py_ssize_t i = 0, child
        cdef QEntry last
        self.size -= 1
        if self.size == 0:
            return
        last = self.heap[self.size]
        while True:
            child = 2 * i + 1
            if child >= self.size:
                break
            if child + 1 < self.size and _less(&self.heap[child + 1], &self.heap[child]):
                child += 1
            if not _less(&self.heap[child], &last):
                break
            self.heap[i] = self.heap[child]
            i = child
        self.heap[i] = last

    cdef void _refresh(self, TouchLog log, const double[:, ::1] allocatable, const double[:, ::1] idle,
                       const double[:, ::1] avail, const double[::1] gpu_capacity,
                       const int[::1] name_rank, int n) noexcept nogil:
        cdef QEntry e
        if self.pushed[n] == log.ver[n] + 1:
            return
        self.pushed[n] = log.ver[n] + 1
        if self._key(allocatable, idle, avail, gpu_capacity, name_rank, n, &e):
            e.ver = log.ver[n]
            self._push(&e)

    cdef void sync(self, TouchLog log, const double[:, ::1] allocatable, const double[:, ::1] idle,
                   const double[:, ::1] avail, const double[::1] gpu_capacity,
                   const int[::1] name_rank) noexcept nogil:
        cdef Py_ssize_t p, n
        if self.synced < 0:
            self.size = 0
            for n in range(self.n_nodes):
                self.pushed[n] = 0
            for n in range(self.n_nodes):
                self._refresh(log, allocatable, idle, avail, gpu_capacity, name_rank, <int>n)
        else:
            for p in range(self.synced, log.length):
                self._refresh(log, allocatable, idle, avail, gpu_capacity, name_rank, log.log[p])
        self.synced = log.length

    cdef int best(self, TouchLog log) noexcept nogil:
        while self.size > 0:
            if self.heap[0].ver == log.ver[self.heap[0].node]:
                return self.heap[0].node
            self._pop()
        return -1

    def place(self, TouchLog log, NodeArrays a, Placements out, DomainConstraints constraints=None):
        """Same contract as ``place`` (no extra scores, from index 0), answered from the queue.

        Returns the number placed, or -1 when the class turned out not to be exact before
        anything was placed (the caller must then use ``place``; nothing was changed). When
        it turns inexact later, it stops there and the caller places the rest with ``place``.
        ``constraints`` must be ``anti_only``: nodes they refuse are set aside for this run
        (pushed back at its end, the queue is shared) and each placement is charged to them.
        """
        if constraints is not None and (not constraints.anti_only or constraints.n_nodes != a.n_nodes):
            raise ValueError("constraints: only anti-affinity filters over these nodes can use the queue")
        # req_cols and score_col were checked against req's width at construction
        if self.n_nodes != a.n_nodes or log.n_nodes != a.n_nodes or self.req.shape[0] != a.n_res \
                or out.undo_v.shape[2] != a.n_res or self.gpu_col != a.gpu_col:
            raise ValueError("node queue, touch log, node arrays and output do not match in shape")
        cdef int i, node = -1, placed = 0, n_res = <int>a.n_res, count = <int>out.capacity
        cdef Py_ssize_t c, k
        cdef bint pipelined
        cdef const double[:, ::1] allocatable = a.allocatable_v
        cdef double[:, ::1] idle = a.idle_v, releasing = a.releasing_v, avail = a.avail_v
        cdef const double[::1] gpu_capacity = a.gpu_capacity_v
        cdef const int[::1] name_rank = a.name_rank_v
        cdef int[::1] out_nodes = out.nodes_v
        cdef unsigned char[::1] out_pipelined = out.pipelined_v
        cdef double[:, :, ::1] undo = out.undo_v
        cdef bint has_c = constraints is not None
        cdef QEntry* aside = NULL
        cdef Py_ssize_t n_aside = 0, cap_aside = 0
        cdef QEntry* grown
        with nogil:
            self.sync(log, allocatable, idle, avail, gpu_capacity, name_rank)
            if not self.exact:
                placed = -1
            else:
                for i in range(count):
                    node = self.best(log)
                    while has_c and node >= 0 and not constraints.anti_ok(node):
                        if n_aside == cap_aside:      # set the entry aside for this run
                            cap_aside = 2 * cap_aside + 16
                            grown = <QEntry*>realloc(aside, cap_aside * sizeof(QEntry))
                            if grown == NULL:
                                node = -2
                                break
                            aside = grown
                        aside[n_aside] = self.heap[0]
                        n_aside += 1
                        self._pop()
                        node = self.best(log)
                    if node < 0:
                        break
                    pipelined = False
                    for k in range(self.req_cols.shape[0]):
                        c = self.req_cols[k]
                        if idle[c, node] < self.req[c] - EPS:
                            pipelined = True
                            break
                    for c in range(n_res):
                        undo[i, 0, c] = idle[c, node]
                        undo[i, 1, c] = releasing[c, node]
                    _take(idle, releasing, avail, self.req, self.req_cols, node, pipelined)
                    log.touch(node)
                    if has_c:
                        constraints.charge(node)
                    out_nodes[i] = node
                    out_pipelined[i] = pipelined
                    placed += 1
                    self.sync(log, allocatable, idle, avail, gpu_capacity, name_rank)
                    if not self.exact:
                        break
            for i in range(<int>n_aside):             # back in the shared queue
                self._push(&aside[i])
        free(aside)
        if node == -2:
            raise MemoryError()
        return placed
