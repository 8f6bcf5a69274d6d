import numpy as np
import numpy.typing as npt

# Units per resource column: GPU devices, CPU millicores, memory bytes.
# deserved/limit: exactly -1 = unlimited / no limit. request includes descendants.

def divide_fair_share(parent: npt.ArrayLike, priority: npt.ArrayLike, order_key: npt.ArrayLike,
                      deserved: npt.ArrayLike, limit: npt.ArrayLike, weight: npt.ArrayLike,
                      request: npt.ArrayLike, usage: npt.ArrayLike, capacity: npt.ArrayLike,
                      k_value: float,
                      fair_share_out: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...

def aggregate_to_parents(parent: npt.ArrayLike,
                         values: npt.ArrayLike) -> npt.NDArray[np.float64]: ...

def allocatable_share(deserved: npt.ArrayLike, fair_share: npt.ArrayLike, limit: npt.ArrayLike,
                      out: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...

def dominant_resource_share(allocated: npt.ArrayLike, allocatable_share: npt.ArrayLike,
                            total: npt.ArrayLike,
                            out: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
