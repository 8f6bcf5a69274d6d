# Node choice for one task or a run of identical tasks: feasibility, KAI scores, best node.
#
# Array layout (resource-major so each resource check is a contiguous scan over nodes):
#   R = number of resource columns (kai.api.resources: 0 cpu millicores, 1 memory bytes,
#       2 nvidia.com/gpu devices, 3 pods, 4 ephemeral-storage bytes, 5.. extended units)
#   N = number of node rows in the snapshot
#   allocatable : float64[R, N]   node allocatable, kai units
#   idle        : float64[R, N]   allocatable minus everything placed on the node
#   releasing   : float64[R, N]   requests of pods that are terminating / virtually evicted
#   avail       : float64[R, N]   idle + releasing, kept in sync by every update
#   gpu_capacity: float64[N]      GPU devices for spread scoring (gpu.count label, else allocatable)
#   mask        : uint8[N]        1 = node passes the static predicates for this task
#   name_rank   : int32[N]        position of the node name in sorted order (tie-break, lower wins)
#   extra_score : float64[N]      summed scores of the batch NodeOrder plugins (may be all zero)
#   req         : float64[R]      the task request, kai units
#   req_cols    : int32[K]        columns where req > 0 (the only ones checked)
# Scores follow KAI's bands: availability +100 (fits without waiting for releasing),
# resourcetype +10 (CPU-only task on a GPU-less node), nodeplacement 0..9 (binpack) or
# 0..1 (spread), plus extra_score. Highest total wins; ties go to the lowest name_rank.

# --- NodeArrays: the session's node arrays, checked once --------------------------------
# Built once per session over the session's own arrays (no copy): every kernel entry then
# takes this struct instead of loose arrays, so shapes and dtypes are checked in one place
# (``NodeArrays.__init__``) and per call only the task's own arguments are checked.
#   allocatable, idle, releasing, avail : float64[R, N] (C-contiguous)
#   gpu_capacity                        : float64[N]
#   name_rank                           : int32[N]
#   dev_used, dev_alloc, dev_rel        : float64[N, D]   (gpusharing.pxd)
#   dev_from_rel                        : uint8[N, D]
#   gpu_col                             : the GPU column (devices), 0 <= gpu_col < R
cdef class NodeArrays:
    cdef readonly Py_ssize_t n_nodes, n_res, n_dev
    cdef readonly int gpu_col
    cdef double[:, ::1] allocatable_v, idle_v, releasing_v, avail_v
    cdef double[::1] gpu_capacity_v
    cdef int[::1] name_rank_v
    cdef double[:, ::1] dev_used_v, dev_alloc_v, dev_rel_v
    cdef unsigned char[:, ::1] dev_from_rel_v
    cdef readonly object allocatable, idle, releasing, avail, gpu_capacity, name_rank
    cdef readonly object dev_used, dev_alloc, dev_rel, dev_from_rel

# --- Placements: where a run of identical tasks went ------------------------------------
#   nodes     : int32[K]        node column of task i
#   pipelined : uint8[K]        1 = task i waits for releasing resources
#   undo      : float64[K, 2, R] idle (row 0) and releasing (row 1) columns of that node before
#                               task i was placed; restore in reverse order to undo exactly
cdef class Placements:
    cdef readonly Py_ssize_t capacity
    cdef int[::1] nodes_v
    cdef unsigned char[::1] pipelined_v
    cdef double[:, :, ::1] undo_v
    cdef readonly object nodes, pipelined, undo

cdef enum Strategy:
    BINPACK = 0
    SPREAD = 1

cdef int best_node(const double[:, ::1] allocatable, const double[:, ::1] idle,
                   const double[:, ::1] avail, const double[::1] gpu_capacity,
                   const unsigned char[::1] mask, const int[::1] name_rank,
                   const double[::1] extra_score, bint has_extra,
                   const double[::1] req, const int[::1] req_cols,
                   int score_col, int strategy, bint cpu_only, int gpu_col,
                   bint allow_pipeline, unsigned char[::1] scratch,
                   bint* pipelined, const unsigned char* wait=*) noexcept nogil

# --- Lazy node queues (one per task class) --------------------------------------------
# When no plugin adds per-node scores, KAI's total score orders nodes lexicographically by
# (band = availability + resourcetype, placement monotone in the free amount, name rank).
# A NodeQueue keeps feasible nodes of one task class (mask, request, strategy) in a heap
# keyed that way; a session-wide TouchLog records every node whose columns changed, and a
# queue re-keys only those nodes before answering. Entries carry the node's version at
# push time; stale entries are dropped when they reach the top.
cdef struct QEntry:
    double k1          # -(band score): lower is better
    double k2          # binpack: free amount (lower better); spread: -free/capacity
    int rank           # node name rank (lower better)
    int node           # node column
    unsigned int ver   # node version when pushed

cdef class TouchLog:
    cdef unsigned int* ver     # uint32[N]: bumped on every change of a node's columns
    cdef int* log              # int32[len]: node columns in order of change
    cdef Py_ssize_t n_nodes, length, cap
    cdef void touch(self, int node) noexcept nogil
