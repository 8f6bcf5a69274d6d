import numpy as np
import numpy.typing as npt

from kai._fast.placement import NodeArrays

STRATEGY_BINPACK: int
STRATEGY_SPREAD: int
GPU_ORDER_NONE: int
GPU_ORDER_PACK: int
GPU_ORDER_SPREAD: int
KIND_ALLOCATED: int
KIND_RELEASING: int
KIND_PIPELINED: int
WHOLE_IDLE: int
WHOLE_RELEASING: int

def update_group(idle: npt.NDArray[np.float64], releasing: npt.NDArray[np.float64],
                 avail: npt.NDArray[np.float64], dev_used: npt.NDArray[np.float64],
                 dev_alloc: npt.NDArray[np.float64], dev_rel: npt.NDArray[np.float64],
                 dev_from_rel: npt.NDArray[np.uint8], n: int, d: int, portion: float, kind: int,
                 sign: float, from_releasing: bool, gpu_col: int) -> None: ...

def choose_node(a: NodeArrays, mask: npt.NDArray[np.uint8], extra_score: npt.NDArray[np.float64] | None,
                req: npt.NDArray[np.float64], req_cols: npt.NDArray[np.int32],
                portion: npt.NDArray[np.float64], num_devices: int, strategy: int, gpu_order: int,
                sharing_score: float, allow_pipeline: bool,
                out_devs: npt.NDArray[np.int32]) -> tuple[int, bool]: ...
