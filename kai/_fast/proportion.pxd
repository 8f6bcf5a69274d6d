# Fair-share division of the proportion plugin (KAI resource_division.go + proportion.go
# setFairShareForQueues), for every queue of the tree and every resource in one call.
#
# Sizes: Q = number of queues (rows), R = number of resources (columns; kai uses
#        0 cpu, 1 memory, 2 gpu, but the kernel treats every column the same way).
# Units per column: GPU in devices (fractions allowed), CPU in millicores, memory in bytes
#        (a Queue's memory quota/limit in MB must be multiplied by 1e6 by the caller; KAI
#        also clamps that product with max(-1, x*1e6), so any negative memory value is -1).
#
# Inputs (read only):
#   parent      : int32[Q]      index of the parent queue, -1 for a top-level queue. Any order
#                               is accepted; the kernel derives a top-down order itself and
#                               rejects out-of-range indices and cycles.
#   priority    : int64[Q]      Queue.spec.priority; over-quota goes to higher values first.
#   order_key   : int64[Q]      rank of (creationTimestamp, uid), smaller = created earlier;
#                               ties fall back to the lower row index.
#   deserved    : float64[Q, R] quota; exactly -1 = unlimited (= the amount being divided).
#   limit       : float64[Q, R] maxAllowed; exactly -1 = no limit; 0 = nothing.
#   weight      : float64[Q, R] overQuotaWeight; 0 = never gets over-quota.
#   request     : float64[Q, R] allocated + pending of the queue AND all its descendants
#                               (aggregated by the caller, see aggregate_to_parents).
#   usage       : float64[Q, R] normalised historical usage (usage / cluster capacity), or 0.
#   capacity    : float64[R]    what the top-level queues divide (cluster total).
#   k_value     : double        time-based fairness factor (KAI default 1.0).
# Output:
#   fair_share  : float64[Q, R] overwritten with each queue's fair share.
#
# Scratch (allocated by the def wrapper, sizes in brackets):
#   child_start : int32[Q + 3]  CSR offsets: children of slot s (s = Q for the roots) are
#                               child_list[child_start[s]:child_start[s + 1]].
#   child_list  : int32[Q]      children of each parent, sorted by (priority desc, index asc).
#   bfs         : int32[Q]      queues in top-down order (roots first).
#   rem         : float64[Q]    remembered fractional remainder of the last floored slice.
#   has_rem     : uint8[Q]      1 while rem[q] is remembered (KAI's remainingRequested map).
#   share_w     : float64[Q]    shareWeight of the current round.
#   entries     : RemEntry[Q]   sort buffer for the remainder pass.

from libc.stdint cimport int32_t, int64_t

cdef struct RemEntry:
    double rem
    int64_t key
    int32_t idx

cdef struct PrioEntry:
    int64_t prio
    int32_t idx

# 0 on success, -1 when parent[] contains a cycle (some queue is never reached from a root).
cdef int build_tree(const int32_t[::1] parent, const int64_t[::1] priority,
                    int32_t[::1] child_start, int32_t[::1] child_list, int32_t[::1] bfs,
                    PrioEntry* prio_buf) noexcept nogil

# Divide ``total`` of resource column r among the siblings child_list[lo:hi] (already sorted
# by priority desc, index asc); adds into fair_share[:, r] (the rows must start at 0).
cdef void divide_group(double total, Py_ssize_t r, const int32_t[::1] members, Py_ssize_t lo,
                       Py_ssize_t hi, const int64_t[::1] priority,
                       const int64_t[::1] order_key, const double[:, ::1] deserved,
                       const double[:, ::1] limit, const double[:, ::1] weight,
                       const double[:, ::1] request, const double[:, ::1] usage,
                       double k_value, double[:, ::1] fair_share, double[::1] rem,
                       unsigned char[::1] has_rem, double[::1] share_w,
                       RemEntry* entries) noexcept nogil
