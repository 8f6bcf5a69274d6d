import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]

def node_mask(cand: U8, used: U8, alt_count: I32, alt_admin: U8, req_alt_start: I32, dev_node: I32,
              dev_scope: I32, scope_nodes: U8, net_start: int, node_pool_bad: U8, base: U8,
              counts: I32, busy: I32, out: U8) -> int: ...

class Search:
    def __init__(self, cand: U8, used: U8, alt_count: I32, alt_admin: U8, req_alt_start: I32,
                 req_claim: I32, con_attr: I32, con_claim: I32, con_alt: U8, dev_node: I32,
                 dev_scope: I32, scope_nodes: U8, node_start: I32, net_start: int, node_pool_bad: U8,
                 n_claims: int, max_per_claim: int, budget: int, rows: I32,
                 taken: npt.NDArray[np.uint64]) -> None: ...
    def pick(self, node: int, out_rows: I32, out_alt: I32) -> int: ...
    def feasible(self, nodes: I32, out: U8) -> int: ...
