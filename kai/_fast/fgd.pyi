import numpy as np
import numpy.typing as npt

def frag_delta(cpu_free: npt.NDArray[np.float64], mem_free: npt.NDArray[np.float64],
               dev_free: npt.NDArray[np.float64], node_model: npt.NDArray[np.uint64],
               mask: npt.NDArray[np.uint8], g_values: npt.NDArray[np.float64],
               t_cpu: npt.NDArray[np.float64], t_mem: npt.NDArray[np.float64],
               t_g: npt.NDArray[np.int32], t_ndev: npt.NDArray[np.int32],
               t_models: npt.NDArray[np.uint64], t_weight: npt.NDArray[np.float64],
               cpu: float, mem: float, gpu: float, ndev: int, models: int,
               out_delta: npt.NDArray[np.float64], out_device: npt.NDArray[np.int32],
               cache: "FragCache | None" = None) -> int: ...

def node_fragmentation(cpu_free: npt.NDArray[np.float64], mem_free: npt.NDArray[np.float64],
                       dev_free: npt.NDArray[np.float64], node_model: npt.NDArray[np.uint64],
                       g_values: npt.NDArray[np.float64], t_cpu: npt.NDArray[np.float64],
                       t_mem: npt.NDArray[np.float64], t_g: npt.NDArray[np.int32],
                       t_ndev: npt.NDArray[np.int32], t_models: npt.NDArray[np.uint64],
                       t_weight: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None: ...

class FragCache:
    key: npt.NDArray[np.float64]
    delta: npt.NDArray[np.float64]
    device: npt.NDArray[np.int32]
    def __init__(self, n_nodes: int = 0, n_dev: int = 0) -> None: ...
    def reset(self, n_nodes: int, n_dev: int) -> None: ...

def device_view(idle_gpu: npt.NDArray[np.float64], dev_used: npt.NDArray[np.float64],
                dev_alloc: npt.NDArray[np.float64], dev_rel: npt.NDArray[np.float64],
                out: npt.NDArray[np.float64]) -> None: ...

def band_scores(delta: npt.NDArray[np.float64], dev_free: npt.NDArray[np.float64], band: float, tie: float,
                out: npt.NDArray[np.float64]) -> int: ...
