import numpy as np
import numpy.typing as npt

STRATEGY_BINPACK: int
STRATEGY_SPREAD: int

def place(allocatable: npt.NDArray[np.float64], idle: npt.NDArray[np.float64],
          releasing: npt.NDArray[np.float64], avail: npt.NDArray[np.float64],
          gpu_capacity: npt.NDArray[np.float64], mask: npt.NDArray[np.uint8],
          name_rank: npt.NDArray[np.int32], extra_score: npt.NDArray[np.float64] | None,
          req: npt.NDArray[np.float64], req_cols: npt.NDArray[np.int32], score_col: int,
          strategy: int, cpu_only: bool, gpu_col: int, allow_pipeline: bool, count: int,
          out_nodes: npt.NDArray[np.int32], out_pipelined: npt.NDArray[np.uint8],
          undo: npt.NDArray[np.float64]) -> int: ...

def fit_counts(idle: npt.NDArray[np.float64], avail: npt.NDArray[np.float64],
               mask: npt.NDArray[np.uint8], req: npt.NDArray[np.float64],
               req_cols: npt.NDArray[np.int32], out_short: npt.NDArray[np.int64]) -> int: ...
