"""Readable twin of kai._fast.dra (same arguments, same results, plain Python loops).

Used by the tests (random inputs, compared with the compiled kernel) and as the in-run
baseline of bench/bench_dra.py.
"""
from __future__ import annotations


def node_mask(cand, used, alt_count, alt_admin, req_alt_start, dev_node, dev_scope, scope_nodes,
              net_start, node_pool_bad, base, counts, busy, out):
    n_alts, n_dev = len(cand), (len(cand[0]) if len(cand) else 0)
    n_nodes = len(out)
    for a in range(n_alts):
        for n in range(n_nodes):
            counts[a][n] = 0
            busy[a][n] = 0
        for d in range(n_dev):
            if not cand[a][d]:
                continue
            reach = [dev_node[d]] if d < net_start else \
                [n for n in range(n_nodes) if scope_nodes[dev_scope[d]][n]]
            for n in reach:
                if not alt_admin[a] and used[d]:
                    busy[a][n] += 1
                else:
                    counts[a][n] += 1
    total = 0
    for n in range(n_nodes):
        ok = bool(base[n])
        for q in range(len(req_alt_start) - 1):
            if not ok:
                break
            alts = range(req_alt_start[q], req_alt_start[q + 1])
            ok = any(counts[a][n] >= alt_count[a] if alt_count[a] > 0 else
                     (counts[a][n] >= 1 and busy[a][n] == 0 and not node_pool_bad[n]) for a in alts)
        out[n] = 1 if ok else 0
        total += out[n]
    return total


class Search:
    """Depth-first search as in the kernel, with recursion on Python lists."""

    def __init__(self, cand, used, alt_count, alt_admin, req_alt_start, req_claim, con_attr, con_claim,
                 con_alt, dev_node, dev_scope, scope_nodes, node_start, net_start, node_pool_bad,
                 n_claims, max_per_claim, budget, rows=None, taken=None):
        if n_claims > 64:
            raise ValueError("at most 64 claims per decision")
        self.cand, self.used, self.alt_count, self.alt_admin = cand, used, alt_count, alt_admin
        self.req_alt_start, self.req_claim = req_alt_start, req_claim
        self.con_attr, self.con_claim, self.con_alt = con_attr, con_claim, con_alt
        self.dev_node, self.dev_scope, self.scope_nodes = dev_node, dev_scope, scope_nodes
        self.node_start, self.net_start, self.node_pool_bad = node_start, net_start, node_pool_bad
        self.n_claims, self.max_per_claim, self.budget = n_claims, max_per_claim, budget

    def pick(self, node, out_rows, out_alt):
        r, chosen = self._run(node)
        for i, (d, a) in enumerate(chosen):
            out_rows[i] = d
            out_alt[i] = a
        return r

    def feasible(self, nodes, out):
        total = 0
        for i, n in enumerate(nodes):
            out[i] = 1 if self._run(n)[0] >= 0 else 0
            total += out[i]
        return total

    def _run(self, node):
        n_dev = len(self.used)
        rows = list(range(self.node_start[node], self.node_start[node + 1]))
        rows += [d for d in range(self.net_start, n_dev) if self.scope_nodes[self.dev_scope[d]][node]]
        st = {"node": node, "rows": rows, "taken": {}, "claim_n": [0] * max(self.n_claims, 1),
              "con": [[0, 0] for _ in self.con_claim], "out": [], "steps": 0}
        if self._request(st, 0):
            return len(st["out"]), list(st["out"])
        return (-2 if st["steps"] > self.budget else -1), []

    def _request(self, st, q):
        if q == len(self.req_claim):
            return True
        for a in range(self.req_alt_start[q], self.req_alt_start[q + 1]):
            if self.alt_count[a] == 0:
                if self._all(st, q, a):
                    return True
            elif self._device(st, q, a, 0, 0):
                return True
            if st["steps"] > self.budget:
                return False
        return False

    def _device(self, st, q, a, k, pos):
        if k == self.alt_count[a]:
            return self._request(st, q + 1)
        need = self.alt_count[a] - k
        rows = st["rows"]
        for p in range(pos, len(rows) - need + 1):
            st["steps"] += 1
            if st["steps"] > self.budget:
                return False
            d = rows[p]
            if not self.cand[a][d] or not self._take(st, q, a, d):
                continue
            if self._device(st, q, a, k + 1, p + 1):
                return True
            self._drop(st, q, a, d)
        return False

    def _all(self, st, q, a):
        if self.node_pool_bad[st["node"]]:
            return False
        start = len(st["out"])
        found, ok = 0, True
        for d in st["rows"]:
            if not self.cand[a][d]:
                continue
            st["steps"] += 1
            found += 1
            if not self._take(st, q, a, d):
                ok = False
                break
        if ok and found and self._request(st, q + 1):
            return True
        while len(st["out"]) > start:
            self._drop(st, q, a, st["out"][-1][0])
        return False

    def _applies(self, c, a):
        return [k for k in range(len(self.con_claim)) if self.con_claim[k] == c and self.con_alt[k][a]]

    def _take(self, st, q, a, d):
        c = self.req_claim[q]
        takers = st["taken"].get(d, set())
        if self.alt_admin[a]:
            if c in takers:
                return False
        elif self.used[d] or takers:
            return False
        if st["claim_n"][c] >= self.max_per_claim:
            return False
        ks = self._applies(c, a)
        for k in ks:
            v = self.con_attr[k][d]
            val, n = st["con"][k]
            if v < 0 or (n > 0 and val != v):
                return False
        for k in ks:
            if st["con"][k][1] == 0:
                st["con"][k][0] = self.con_attr[k][d]
            st["con"][k][1] += 1
        st["taken"].setdefault(d, set()).add(c)
        st["claim_n"][c] += 1
        st["out"].append((d, a))
        return True

    def _drop(self, st, q, a, d):
        c = self.req_claim[q]
        st["out"].pop()
        st["taken"][d].discard(c)
        st["claim_n"][c] -= 1
        for k in self._applies(c, a):
            st["con"][k][1] -= 1
