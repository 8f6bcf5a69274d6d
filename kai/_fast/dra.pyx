# cython: language_level=3
"""DRA allocation kernels. See dra.pxd for shapes and units; reference/dra.py is the
readable twin the tests compare against.

``node_mask`` answers, for all nodes in one pass over the devices, which nodes have enough
candidate devices for every request of a pod (exact when requests do not compete for
devices and no constraint ties them; a necessary condition otherwise). ``Search`` is
kube-scheduler's structured allocator for one node: a depth-first search over requests in
order, alternatives (firstAvailable) in priority order and devices in inventory order,
checking device use, admin access, the per-claim result limit and matchAttribute
constraints as it goes; the first complete solution wins.
"""
import numpy as np
cimport numpy as cnp
from libc.stdlib cimport calloc, free

cnp.import_array()


def node_mask(const unsigned char[:, ::1] cand, const unsigned char[::1] used,
              const int[::1] alt_count, const unsigned char[::1] alt_admin,
              const int[::1] req_alt_start, const int[::1] dev_node, const int[::1] dev_scope,
              const unsigned char[:, ::1] scope_nodes, int net_start,
              const unsigned char[::1] node_pool_bad, const unsigned char[::1] base,
              int[:, ::1] counts, int[:, ::1] busy, unsigned char[::1] out):
    """Fill ``counts``/``busy`` (int32[A, N]: usable / in-use candidates per node) and ``out``
    (uint8[N]: base and every request has an alternative that fits); returns #feasible."""
    cdef Py_ssize_t A = cand.shape[0], D = cand.shape[1], N = out.shape[0]
    cdef Py_ssize_t S = scope_nodes.shape[0], Q = req_alt_start.shape[0] - 1
    cdef Py_ssize_t a, d, n, s, q
    cdef int c, b, k, total = 0
    cdef bint admin, ok, any_alt
    cdef int* sc = <int*> calloc(S + 1, sizeof(int))
    cdef int* sb = <int*> calloc(S + 1, sizeof(int))
    if sc == NULL or sb == NULL:
        free(sc)
        free(sb)
        raise MemoryError()
    try:
        with nogil:
            for a in range(A):
                admin = alt_admin[a] != 0
                for n in range(N):
                    counts[a, n] = 0
                    busy[a, n] = 0
                for s in range(S):
                    sc[s] = 0
                    sb[s] = 0
                for d in range(net_start):
                    if cand[a, d]:
                        if not admin and used[d]:
                            busy[a, dev_node[d]] += 1
                        else:
                            counts[a, dev_node[d]] += 1
                for d in range(net_start, D):
                    if cand[a, d]:
                        if not admin and used[d]:
                            sb[dev_scope[d]] += 1
                        else:
                            sc[dev_scope[d]] += 1
                for s in range(S):
                    c = sc[s]
                    b = sb[s]
                    if c == 0 and b == 0:
                        continue
                    for n in range(N):
                        if scope_nodes[s, n]:
                            counts[a, n] += c
                            busy[a, n] += b
            for n in range(N):
                ok = base[n] != 0
                q = 0
                while ok and q < Q:
                    any_alt = False
                    for a in range(req_alt_start[q], req_alt_start[q + 1]):
                        k = alt_count[a]
                        if k > 0:
                            if counts[a, n] >= k:
                                any_alt = True
                                break
                        elif counts[a, n] >= 1 and busy[a, n] == 0 and not node_pool_bad[n]:
                            any_alt = True
                            break
                    ok = any_alt
                    q += 1
                out[n] = ok
                total += ok
    finally:
        free(sc)
        free(sb)
    return total


cdef class Search:
    """One pod's claims over one inventory; ``pick`` and ``feasible`` run the search per node."""

    def __init__(self, const unsigned char[:, ::1] cand, const unsigned char[::1] used,
                 const int[::1] alt_count, const unsigned char[::1] alt_admin,
                 const int[::1] req_alt_start, const int[::1] req_claim,
                 const int[:, ::1] con_attr, const int[::1] con_claim, const unsigned char[:, ::1] con_alt,
                 const int[::1] dev_node, const int[::1] dev_scope, const unsigned char[:, ::1] scope_nodes,
                 const int[::1] node_start, int net_start, const unsigned char[::1] node_pool_bad,
                 int n_claims, int max_per_claim, long budget, int[::1] rows,
                 unsigned long long[::1] taken):
        if n_claims > 64:
            raise ValueError("at most 64 claims per decision")
        self.cand, self.used, self.alt_count, self.alt_admin = cand, used, alt_count, alt_admin
        self.req_alt_start, self.req_claim = req_alt_start, req_claim
        self.con_attr, self.con_claim, self.con_alt = con_attr, con_claim, con_alt
        self.dev_node, self.dev_scope, self.scope_nodes = dev_node, dev_scope, scope_nodes
        self.node_start, self.net_start, self.node_pool_bad = node_start, net_start, node_pool_bad
        self.max_per_claim, self.budget = max_per_claim, budget
        if rows.shape[0] < cand.shape[1] or taken.shape[0] < cand.shape[1]:
            raise ValueError("scratch buffers must hold one entry per device")
        self.rows, self.taken = rows, taken     # shared scratch; taken is all zero between runs
        self.con_val = np.zeros(max(con_claim.shape[0], 1), dtype=np.int32)
        self.con_n = np.zeros(max(con_claim.shape[0], 1), dtype=np.int32)
        self.claim_n = np.zeros(max(n_claims, 1), dtype=np.int32)
        size = max(n_claims * max_per_claim, 1)
        self.out_rows = np.empty(size, dtype=np.int32)
        self.out_alt = np.empty(size, dtype=np.int32)

    def pick(self, int node, int[::1] out_rows, int[::1] out_alt):
        """Devices for every request on ``node``: their count (rows/alternatives written to the
        outputs, in allocation order), -1 if none fits, -2 if the search budget ran out."""
        cdef int r, i
        with nogil:
            r = self.run(node)
            if r > 0:
                for i in range(r):
                    out_rows[i] = self.out_rows[i]
                    out_alt[i] = self.out_alt[i]
        return r

    def feasible(self, const int[::1] nodes, unsigned char[::1] out):
        """out[i] = 1 if the search succeeds on nodes[i] (budget exhaustion counts as no);
        returns the number of feasible nodes."""
        cdef Py_ssize_t i
        cdef int total = 0
        with nogil:
            for i in range(nodes.shape[0]):
                out[i] = self.run(nodes[i]) >= 0
                total += out[i]
        return total

    cdef int run(self, int node) noexcept nogil:
        cdef Py_ssize_t d, D = self.cand.shape[1]
        cdef int i, k
        self.node = node
        self.n_rows = 0
        for d in range(self.node_start[node], self.node_start[node + 1]):
            self.rows[self.n_rows] = <int> d
            self.n_rows += 1
        for d in range(self.net_start, D):
            if self.scope_nodes[self.dev_scope[d], node]:
                self.rows[self.n_rows] = <int> d
                self.n_rows += 1
        self.n_out = 0
        self.steps = 0
        for k in range(self.con_n.shape[0]):
            self.con_n[k] = 0
        for k in range(self.claim_n.shape[0]):
            self.claim_n[k] = 0
        if self._request(0):
            for i in range(self.n_out):          # leave the scratch clean for the next node
                self.taken[self.out_rows[i]] = 0
            return self.n_out
        return -2 if self.steps > self.budget else -1

    cdef bint _request(self, int q) noexcept nogil:
        cdef int a
        if q == self.req_claim.shape[0]:
            return True
        for a in range(self.req_alt_start[q], self.req_alt_start[q + 1]):
            if self.alt_count[a] == 0:
                if self._all(q, a):
                    return True
            elif self._device(q, a, 0, 0):
                return True
            if self.steps > self.budget:
                return False
        return False

    cdef bint _device(self, int q, int a, int k, int pos) noexcept nogil:
        cdef int p, d, need
        if k == self.alt_count[a]:
            return self._request(q + 1)
        need = self.alt_count[a] - k
        for p in range(pos, self.n_rows - need + 1):
            self.steps += 1
            if self.steps > self.budget:
                return False
            d = self.rows[p]
            if not self.cand[a, d]:
                continue
            if not self._take(q, a, d):
                continue
            if self._device(q, a, k + 1, p + 1):
                return True
            self._drop(q, a, d)
        return False

    cdef bint _all(self, int q, int a) noexcept nogil:
        cdef int p, d, start = self.n_out, found = 0
        cdef bint ok = True
        if self.node_pool_bad[self.node]:
            return False
        for p in range(self.n_rows):
            d = self.rows[p]
            if not self.cand[a, d]:
                continue
            self.steps += 1
            found += 1
            if not self._take(q, a, d):
                ok = False
                break
        if ok and found > 0 and self._request(q + 1):
            return True
        while self.n_out > start:
            self._drop(q, a, self.out_rows[self.n_out - 1])
        return False

    cdef bint _take(self, int q, int a, int d) noexcept nogil:
        cdef int c = self.req_claim[q], k, j, v
        cdef unsigned long long bit = (<unsigned long long> 1) << c
        if self.alt_admin[a]:
            if self.taken[d] & bit:
                return False
        elif self.used[d] or self.taken[d]:
            return False
        if self.claim_n[c] >= self.max_per_claim:
            return False
        for k in range(self.con_claim.shape[0]):
            if self.con_claim[k] != c or not self.con_alt[k, a]:
                continue
            v = self.con_attr[k, d]
            if v < 0 or (self.con_n[k] > 0 and self.con_val[k] != v):
                for j in range(k):
                    if self.con_claim[j] == c and self.con_alt[j, a]:
                        self.con_n[j] -= 1
                return False
            if self.con_n[k] == 0:
                self.con_val[k] = v
            self.con_n[k] += 1
        self.taken[d] |= bit
        self.claim_n[c] += 1
        self.out_rows[self.n_out] = d
        self.out_alt[self.n_out] = a
        self.n_out += 1
        return True

    cdef void _drop(self, int q, int a, int d) noexcept nogil:
        cdef int c = self.req_claim[q], k
        self.n_out -= 1
        self.taken[d] &= ~((<unsigned long long> 1) << c)
        self.claim_n[c] -= 1
        for k in range(self.con_claim.shape[0]):
            if self.con_claim[k] == c and self.con_alt[k, a]:
                self.con_n[k] -= 1
