import numpy as np
import numpy.typing as npt

KIND_ANTI: int
KIND_AFFINITY: int
KIND_SPREAD: int
KIND_SCORE: int
KIND_SPREAD_SCORE: int

class DomainConstraints:
    n_c: int
    n_nodes: int
    counts_array: npt.NDArray[np.float64]
    def __init__(self, n_nodes: int, constraints: list[dict], bootstrap: bool = ...) -> None: ...
    def filter_and_score(self, base: npt.NDArray[np.uint8], out_score: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]: ...
    def place_at(self, node: int) -> None: ...
