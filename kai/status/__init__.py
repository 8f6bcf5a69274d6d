"""Looking at a cluster rather than reading it: ``kai status`` and the shared views it is built from.

Modules:
  ``occupancy``  GPU occupancy per node and node pool (whole, fractional, fragmented, free) from
                 the NodeTable's arrays; also used by ``kai simulate --report`` and the
                 ``kai_gpu_devices`` metric.
  ``reasons``    an unschedulable reason -> its cause (for grouping pending jobs by why).
  ``live``       one list per kind from the API server -> ClusterState -> the status document.
  ``render``     the status document -> terminal text with bars (``kai status``).

Layer: beside ``kai.sim`` and ``kai.controller`` (it uses the scheduler's session to compute fair
shares the same way ``kai simulate`` does); imported by ``kai.cli``. ``occupancy`` and ``reasons``
import nothing above ``kai.cache`` so the controller's metrics and the simulator can use them.
"""
