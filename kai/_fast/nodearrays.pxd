# Charging pod requests to node columns (used by the cluster state on every pod event).
#   idle, releasing, avail : float64[R, N]  (see placement.pxd; avail = idle + releasing)
#   req                    : float64[R]     one pod's request, kai units
#   reqs                   : float64[P, R]  P pods' requests
#   idx                    : int32[P]       node column of each pod (-1 = skip)
#   rel                    : uint8[P]       1 = the pod is terminating (its request is releasing)
#   sign                   : +1 to charge, -1 to uncharge
cdef void charge_one(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail,
                     int i, const double[::1] req, double sign, bint is_releasing) noexcept nogil
