# Topology-domain constraints of one task class, evaluated per placement decision.
#
# Inter-pod affinity / anti-affinity, pod topology spread and host ports all reduce to the
# same shape: every node belongs to one domain of some topology key (its label value; the
# node itself for kubernetes.io/hostname and for ports), and a count per domain of the pods
# that matter decides whether (filters) or how much (scores) the node suits the task.
#
#   C      = number of constraints, N = node columns, DT = total domains over all constraints
#   dom        : int32[C, N]    domain id of node n for constraint c (-1: node lacks the key)
#   counts     : float64[DT]    pods per domain; constraint c owns counts[offset[c]:offset[c+1]]
#   offset     : int32[C + 1]
#   kind       : int32[C]       ANTI, AFFINITY, SPREAD, SCORE, SPREAD_SCORE (below)
#   self_inc   : uint8[C]       1 = the task itself matches: placing it adds 1 to its domain
#                               (and, for SPREAD, counts in the skew)
#   weight     : float64[C]     SCORE: added per pod in the node's domain; SPREAD_SCORE: scale
#   max_skew   : int32[C]       SPREAD / SPREAD_SCORE
#   min_domains: int32[C]       SPREAD: fewer eligible domains than this -> minimum taken as 0
#   elig       : uint8[C, N]    SPREAD*: node counts towards the domain (inclusion policies)
#   dom_elig   : uint8[DT]      SPREAD: domain takes part in the minimum (has an eligible node)
#   releasing  : float64[DT]    ANTI / SPREAD / AFFINITY: pods counted out of ``counts`` because this session
#                               evicts them, though they still run until they are gone. A node
#                               that passes only without them gets ``out_wait`` = 1: a task placed
#                               there must wait (pipeline), as kube-scheduler's preemptor waits
#                               for its victims. AFFINITY: a node passing only through the bootstrap
#                               rule while evicted pods would match waits as well
#   arriving   : float64[DT]    AFFINITY: pods in ``counts`` this session only pipelined (not there
#                               yet); a node whose domain holds only such pods gets ``out_wait``
#
# Kinds (kube-scheduler semantics):
#   ANTI         node passes when dom < 0 or counts[dom] == 0
#   AFFINITY     node passes when dom >= 0 and counts[dom] > 0; or, when no pod matches any of
#                the task's affinity terms anywhere (sum of every AFFINITY count is 0) and the
#                task matches all of them itself (``bootstrap``), when dom >= 0
#   SPREAD       node passes when dom >= 0 and counts[dom] + self - min <= max_skew, min being
#                the smallest count over eligible domains (0 when they are < min_domains)
#   SCORE        score += weight * counts[dom] where dom >= 0 (KAI's podaffinity: raw, unnormalized)
#   SPREAD_SCORE raw = sum over such constraints of counts[dom] * log(#domains among passing
#                nodes + 2) + max_skew - 1 (rounded); nodes lacking a key are ignored (0);
#                score += weight * 100 * (max + min - raw) / max over passing nodes
cdef enum Kind:
    ANTI = 0
    AFFINITY = 1
    SPREAD = 2
    SCORE = 3
    SPREAD_SCORE = 4

cdef class DomainConstraints:
    cdef readonly int n_c
    cdef readonly Py_ssize_t n_nodes
    cdef int[:, ::1] dom
    cdef double[::1] counts
    cdef int[::1] offset
    cdef int[::1] kind
    cdef unsigned char[::1] self_inc
    cdef double[::1] weight
    cdef int[::1] max_skew
    cdef int[::1] min_domains
    cdef unsigned char[:, ::1] elig
    cdef unsigned char[::1] dom_elig
    cdef double[::1] releasing
    cdef double[::1] arriving
    cdef bint has_releasing
    cdef readonly bint has_scores
    # only ANTI filters, nothing releasing, no scores: feasibility only shrinks as the run
    # places (the node queue may then answer the run, skipping nodes ``anti_ok`` refuses)
    cdef readonly bint anti_only
    cdef bint bootstrap
    cdef double[::1] raw            # scratch float64[N]
    cdef unsigned char[::1] seen    # scratch uint8[DT]
    cdef readonly object counts_array

    cdef double _min_eligible(self, int c, bint with_releasing=*) noexcept nogil
    cdef void evaluate(self, const unsigned char* base, unsigned char* out_mask, double* out_score,
                       unsigned char* out_wait) noexcept nogil
    cdef void charge(self, int node) noexcept nogil
    cdef bint anti_ok(self, int node) noexcept nogil
