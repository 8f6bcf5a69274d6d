# Charging pod requests to node columns (used by the cluster state on every pod event).
#   idle, releasing, avail : float64[R, N]  (see placement.pxd; avail = idle + releasing)
#   req                    : float64[R]     one pod's request, kai units
#   idx                    : int32[P]       node column of each pod (-1 = skip)
#   table                  : float64[K, R]  K distinct requests, kai units (charge_rows)
#   rid                    : int32[P]       row of ``table`` each pod charges, in [0, K)
#   rel                    : uint8[P]       1 = the pod is terminating (its request is releasing)
#   sign                   : +1 to charge, -1 to uncharge
cdef void charge_one(double[:, ::1] idle, double[:, ::1] releasing, double[:, ::1] avail,
                     int i, const double[::1] req, double sign, bint is_releasing) noexcept nogil
