import numpy as np
import numpy.typing as npt

def charge(idle: npt.NDArray[np.float64], releasing: npt.NDArray[np.float64], avail: npt.NDArray[np.float64],
           i: int, req: npt.NDArray[np.float64], sign: float, is_releasing: bool) -> None: ...
def charge_many(idle: npt.NDArray[np.float64], releasing: npt.NDArray[np.float64], avail: npt.NDArray[np.float64],
                idx: npt.NDArray[np.int32], reqs: npt.NDArray[np.float64], rel: npt.NDArray[np.uint8],
                sign: float) -> None: ...
