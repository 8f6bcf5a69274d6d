import numpy as np
import numpy.typing as npt

def charge(idle: npt.NDArray[np.float64], releasing: npt.NDArray[np.float64], avail: npt.NDArray[np.float64],
           i: int, req: npt.NDArray[np.float64], sign: float, is_releasing: bool) -> None: ...
def charge_rows(idle: npt.NDArray[np.float64], releasing: npt.NDArray[np.float64], avail: npt.NDArray[np.float64],
                idx: npt.NDArray[np.int32], table: npt.NDArray[np.float64], rid: npt.NDArray[np.int32],
                rel: npt.NDArray[np.uint8], sign: float) -> None: ...
