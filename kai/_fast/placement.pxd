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
                   bint* pipelined) noexcept nogil

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
