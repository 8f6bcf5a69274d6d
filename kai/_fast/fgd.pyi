import numpy as np
import numpy.typing as npt

def frag_delta(cpu_free: npt.NDArray[np.float64], mem_free: npt.NDArray[np.float64],
               dev_free: npt.NDArray[np.float64], node_model: npt.NDArray[np.uint64],
               mask: npt.NDArray[np.uint8], g_values: npt.NDArray[np.float64],
               t_cpu: npt.NDArray[np.float64], t_mem: npt.NDArray[np.float64],
               t_g: npt.NDArray[np.int32], t_ndev: npt.NDArray[np.int32],
               t_models: npt.NDArray[np.uint64], t_weight: npt.NDArray[np.float64],
               cpu: float, mem: float, gpu: float, ndev: int, models: int,
               out_delta: npt.NDArray[np.float64], out_device: npt.NDArray[np.int32]) -> int: ...

def node_fragmentation(cpu_free: npt.NDArray[np.float64], mem_free: npt.NDArray[np.float64],
                       dev_free: npt.NDArray[np.float64], node_model: npt.NDArray[np.uint64],
                       g_values: npt.NDArray[np.float64], t_cpu: npt.NDArray[np.float64],
                       t_mem: npt.NDArray[np.float64], t_g: npt.NDArray[np.int32],
                       t_ndev: npt.NDArray[np.int32], t_models: npt.NDArray[np.uint64],
                       t_weight: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None: ...
