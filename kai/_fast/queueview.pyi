import numpy as np
import numpy.typing as npt
from typing import Iterable

# Rows are [gpu devices, cpu millicores, memory bytes]; deserved -1 = unlimited.

class QueueRows:
    n_rows: int
    alloc: npt.NDArray[np.float64]
    alloc_np: npt.NDArray[np.float64]
    fair: npt.NDArray[np.float64]
    deserved: npt.NDArray[np.float64]
    share: npt.NDArray[np.float64]
    denom: npt.NDArray[np.float64]
    limit: npt.NDArray[np.float64]
    def __init__(self, alloc: npt.NDArray[np.float64], alloc_np: npt.NDArray[np.float64],
                 fair: npt.NDArray[np.float64], deserved: npt.NDArray[np.float64],
                 share: npt.NDArray[np.float64], denom: npt.NDArray[np.float64],
                 limit: npt.NDArray[np.float64] | None = None) -> None: ...
    def stats(self, i: int, r0: float, r1: float, r2: float) -> tuple[bool, bool, bool, float, float]: ...
    def compare(self, li: int, ri: int, l0: float, l1: float, l2: float, r0: float, r1: float, r2: float,
                lprio: int, rprio: int) -> int: ...
    def charge(self, rows: Iterable[int], v0: float, v1: float, v2: float, sign: float,
               nonpreemptible: bool) -> None: ...
    def first_over(self, rows: Iterable[int], r0: float, r1: float, r2: float, nonpreemptible: bool) -> int: ...
