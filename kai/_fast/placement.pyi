import numpy as np
import numpy.typing as npt

STRATEGY_BINPACK: int
STRATEGY_SPREAD: int

class NodeArrays:
    """The session's node arrays, checked once (shapes and dtypes: placement.pxd)."""
    n_nodes: int
    n_res: int
    n_dev: int
    gpu_col: int
    allocatable: npt.NDArray[np.float64]
    idle: npt.NDArray[np.float64]
    releasing: npt.NDArray[np.float64]
    avail: npt.NDArray[np.float64]
    gpu_capacity: npt.NDArray[np.float64]
    name_rank: npt.NDArray[np.int32]
    dev_used: npt.NDArray[np.float64]
    dev_alloc: npt.NDArray[np.float64]
    dev_rel: npt.NDArray[np.float64]
    dev_from_rel: npt.NDArray[np.uint8]
    def __init__(self, allocatable: npt.NDArray[np.float64], idle: npt.NDArray[np.float64],
                 releasing: npt.NDArray[np.float64], avail: npt.NDArray[np.float64],
                 gpu_capacity: npt.NDArray[np.float64], name_rank: npt.NDArray[np.int32],
                 dev_used: npt.NDArray[np.float64] | None = ..., dev_alloc: npt.NDArray[np.float64] | None = ...,
                 dev_rel: npt.NDArray[np.float64] | None = ..., dev_from_rel: npt.NDArray[np.uint8] | None = ...,
                 gpu_col: int = ...) -> None: ...

class Placements:
    capacity: int
    nodes: npt.NDArray[np.int32]
    pipelined: npt.NDArray[np.uint8]
    undo: npt.NDArray[np.float64]
    def __init__(self, capacity: int, n_res: int) -> None: ...
    def take(self, i: int) -> tuple[int, bool, npt.NDArray[np.float64]]: ...

def check_task(a: NodeArrays, mask: npt.NDArray[np.uint8], extra_score: npt.NDArray[np.float64] | None,
               req: npt.NDArray[np.float64], req_cols: npt.NDArray[np.int32], score_col: int = ...) -> None: ...

def place(a: NodeArrays, mask: npt.NDArray[np.uint8], extra_score: npt.NDArray[np.float64] | None,
          req: npt.NDArray[np.float64], req_cols: npt.NDArray[np.int32], score_col: int, strategy: int,
          cpu_only: bool, allow_pipeline: bool, out: Placements, start: int = ...) -> int: ...

def fit_counts(a: NodeArrays, mask: npt.NDArray[np.uint8], req: npt.NDArray[np.float64],
               req_cols: npt.NDArray[np.int32], out_short: npt.NDArray[np.int64]) -> int: ...

class TouchLog:
    def __init__(self, n_nodes: int) -> None: ...
    def mark(self, node: int) -> None: ...
    def __len__(self) -> int: ...

class NodeQueue:
    exact: bool
    mask_ref: object
    def __init__(self, mask: npt.NDArray[np.uint8], req: npt.NDArray[np.float64], req_cols: npt.NDArray[np.int32],
                 score_col: int, strategy: int, cpu_only: bool, gpu_col: int, allow_pipeline: bool) -> None: ...
    def place(self, log: TouchLog, a: NodeArrays, out: Placements) -> int: ...
