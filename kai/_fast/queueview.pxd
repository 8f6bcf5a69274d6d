# Queue-order views and allocation charges of the proportion plugin, per queue row.
#
# One QueueRows object per session, over the proportion plugin's per-queue arrays (no copy):
#   Q = number of queue rows; every row is [gpu devices, cpu millicores, memory bytes]
#   alloc    : float64[Q, 3]  allocated (Allocated|Bound|Binding|Running) of the queue and its
#                             descendants, live: moved only by ``charge``
#   alloc_np : float64[Q, 3]  the same for non-preemptible jobs only, live
#   fair     : float64[Q, 3]  fair share (fixed for the session)
#   deserved : float64[Q, 3]  quota; exactly -1 = unlimited (fixed)
#   share    : float64[Q, 3]  allocatable share; 0 = none (fixed)
#   denom    : float64[Q, 3]  DRS denominators: ``share`` with -1 replaced by the cluster total
#   limit    : float64[Q, 3]  limit; exactly -1 = unlimited (fixed; all -1 when not given)
#
# ``stats(i, r0, r1, r2)`` is QueueOrder.stats without victims for a head job whose init
# request is (r0, r1, r2) [gpu devices, cpu millicores, memory bytes]:
#   (over fair share in every resource, starved (alloc + request <= deserved, 1e-9
#    tolerance), zero-share penalty, DRS with the request, DRS as is)
# ``compare(li, ri, l0, l1, l2, r0, r1, r2, lprio, rprio)`` is QueueOrder.compare's rules 1-7
# without victims for rows li / ri, head-job init requests (l0, l1, l2) / (r0, r1, r2) and
# queue priorities (int64): -1 left first, 1 right first, 0 undecided (creation time next).
# ``charge(rows, v0, v1, v2, sign, nonpreemptible)`` adds (sign > 0) or subtracts the task's
# quota vector v to the listed rows of alloc (and of alloc_np when nonpreemptible), in row
# order, one IEEE add/subtract per cell as the Python loop it replaces.
# ``first_over(rows, r0, r1, r2, nonpreemptible)`` is the proportion plugin's capacity check
# of a request (r0, r1, r2) along a queue path (``rows``, leaf first): -1 when it fits, else
# the first refusal in the order the check asks, encoded as 6 * k + 3 * kind + c, where k is
# the position in ``rows``, c the resource column and kind 0 = over limit (alloc + r > limit
# + 1e-9), 1 = a non-preemptible job over quota (alloc_np + r > deserved + 1e-9; asked only
# when ``nonpreemptible``). Only resources with r > 0 and a bound other than -1 can refuse.
cdef class QueueRows:
    cdef double[:, ::1] alloc_v, alloc_np_v, fair_v, deserved_v, share_v, denom_v, limit_v
    cdef readonly Py_ssize_t n_rows
    cdef readonly object alloc, alloc_np, fair, deserved, share, denom, limit
    cdef void _stats(self, Py_ssize_t i, double r0, double r1, double r2, bint* over, bint* starved,
                     bint* zero, double* drs_job, double* drs) noexcept
