# DRA structured-parameters allocation over flat device arrays (kai.dra.inventory).
#
# Shapes:
#   D = devices (inventory rows; node-local rows of node n are node_start[n]:node_start[n+1],
#       network-attached rows are net_start:D)
#   N = nodes (node-table columns)          S = network scopes (slices' nodeSelector / allNodes)
#   A = request alternatives of one pod's claims to allocate (one per `exactly` request, one per
#       `firstAvailable` entry), in claim order, request order, priority order
#   Q = requests (each owns the alternatives req_alt_start[q]:req_alt_start[q+1])
#   C = claims being allocated (<= 64: a device's takers are a uint64 bit set)
#   K = matchAttribute constraints
# Buffers:
#   cand         : uint8[A, D]   1 = device matches the alternative's class and selectors, is in a
#                                complete valid pool, uses no unsupported field, taints tolerated
#   used         : uint8[D]      1 = allocated (not admin access) to a claim outside this decision
#   alt_count    : int32[A]      devices wanted: ExactCount count (>= 1); 0 = allocationMode All
#   alt_admin    : uint8[A]      1 = adminAccess (may use devices in use, not twice in one claim)
#   req_alt_start: int32[Q+1]    alternatives of request q
#   req_claim    : int32[Q]      claim index (0..C-1) of request q
#   con_attr     : int32[K, D]   value id of constraint k's attribute per device (-1 = lacks it)
#   con_claim    : int32[K]      claim whose devices constraint k ties together
#   con_alt      : uint8[K, A]   1 = constraint k applies to alternative a
#   dev_node     : int32[D]      node column of a node-local device, -1 network-attached
#   dev_scope    : int32[D]      scope of a network-attached device, -1 node-local
#   scope_nodes  : uint8[S, N]   1 = scope s reaches node n
#   node_start   : int32[N+1]
#   node_pool_bad: uint8[N]      1 = node reaches an incomplete/invalid pool (fails mode All)
#   rows         : int32[>=D]    scratch: devices reachable from the node being searched
#   taken        : uint64[>=D]   scratch: bit c = claim c takes the device; all zero between runs
#   out_rows     : int32[M]      chosen device rows, in allocation order (M >= devices wanted)
#   out_alt      : int32[M]      alternative each chosen device serves
# Counts are device counts; the search budget is in device trials.

cdef class Search:
    cdef const unsigned char[:, ::1] cand
    cdef const unsigned char[::1] used
    cdef const int[::1] alt_count
    cdef const unsigned char[::1] alt_admin
    cdef const int[::1] req_alt_start
    cdef const int[::1] req_claim
    cdef const int[:, ::1] con_attr
    cdef const int[::1] con_claim
    cdef const unsigned char[:, ::1] con_alt
    cdef const int[::1] dev_node
    cdef const int[::1] dev_scope
    cdef const unsigned char[:, ::1] scope_nodes
    cdef const int[::1] node_start
    cdef const unsigned char[::1] node_pool_bad
    cdef int net_start, max_per_claim
    cdef long budget, steps
    # scratch: rows/taken shared by the caller across searches, the rest sized at construction
    cdef int[::1] rows            # int32[D]  devices reachable from the node being searched
    cdef int n_rows
    cdef unsigned long long[::1] taken   # uint64[D] bit c = claim c takes the device
    cdef int[::1] con_val         # int32[K]
    cdef int[::1] con_n           # int32[K]
    cdef int[::1] claim_n         # int32[C]
    cdef int[::1] out_rows
    cdef int[::1] out_alt
    cdef int n_out
    cdef int node

    cdef int run(self, int node) noexcept nogil
    cdef bint _request(self, int q) noexcept nogil
    cdef bint _device(self, int q, int a, int k, int pos) noexcept nogil
    cdef bint _all(self, int q, int a) noexcept nogil
    cdef bint _take(self, int q, int a, int d) noexcept nogil
    cdef void _drop(self, int q, int a, int d) noexcept nogil
