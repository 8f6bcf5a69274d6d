"""PodTable: the pods that occupy a node, as flat rows for vectorized selector matching.

Inter-pod affinity, topology spread and host ports count *other pods* per topology domain.
Each pod charged to a node (ours and other schedulers', running, bound or terminating; not
Succeeded / Failed) is a row: its node column (``node``), namespace id (``ns``), whether it
is terminating (``terminating``: topology spread does not count those) and, per label key a
selector has asked about, the id of its value (``label_column``; built on first use, then
kept current). ``rows_matching(selector)`` is then a few numpy operations over all pods.

Alongside, two indexes kept current on the same add / remove:

- ``terms``: the distinct (anti-)affinity terms existing pods carry (required and preferred),
  each with the number of carrying pods per node: kube-scheduler's "existing pods' rules"
  (symmetry) are read from here without scanning pods.
- ``ports``: host ports in use, (protocol, port) -> hostIP -> pods per node.
- ``legacy_mig``: node column -> legacy MIG pods charged there (``PodInfo.legacy_mig``;
  such a node takes no new MIG pods, kai.plugins.legacymig).

Rows are reused (free list); ``n`` is the high-water mark, so arrays are ``[:n]`` views.
Written by ClusterState (``_charge`` / ``_uncharge``), read by kai.framework.pod_counts.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from kai.api.selectors import Selector
from kai.cache.ids import renumber


#: kinds of carried terms in ``PodTable.terms``
REQUIRED_ANTI, REQUIRED_AFFINITY, PREFERRED_AFFINITY, PREFERRED_ANTI = "anti", "affinity", "pref", "prefanti"

#: namespace ids and label value ids are renumbered to the live rows' alone once they hold
#: more than twice as many entries as after the last renumbering, and at least this many
#: (pods whose selected labels carry a value per job, e.g. ``job-name``, would otherwise
#: leave an id per job ever run)
VOCAB_MIN = 1024


class CarriedTerm:
    """One distinct term carried by existing pods, and where its carriers are."""

    __slots__ = ("kind", "weight", "term", "nodes")

    def __init__(self, kind: str, weight: int, term) -> None:
        self.kind = kind
        self.weight = weight
        self.term = term
        self.nodes: Counter = Counter()       # node column -> carrying pods


class PodTable:
    def __init__(self) -> None:
        self.cap = 0
        self.n = 0
        self.node = np.zeros(0, dtype=np.int32)
        self.ns = np.zeros(0, dtype=np.int32)
        self.terminating = np.zeros(0, dtype=np.uint8)
        self.pods: list = []
        self.row_of: dict[str, int] = {}
        self._free: list[int] = []
        self.ns_ids: dict[str, int] = {}
        self._cols: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        self.terms: dict[tuple, CarriedTerm] = {}
        self.ports: dict[tuple[str, int], dict[str, Counter]] = {}
        self.legacy_mig: Counter = Counter()
        self.generation = 0
        #: namespace and label value ids held when they are next renumbered (``_compact_vocab``)
        self._vocab_limit = VOCAB_MIN

    def __len__(self) -> int:
        return len(self.row_of)

    # ------------------------------------------------------------------ rows
    def _grow(self, need: int) -> None:
        cap = max(need, 2 * self.cap, 64)
        extra = cap - self.cap
        self.node = np.concatenate([self.node, np.full(extra, -1, dtype=np.int32)])
        self.ns = np.concatenate([self.ns, np.full(extra, -1, dtype=np.int32)])
        self.terminating = np.concatenate([self.terminating, np.zeros(extra, dtype=np.uint8)])
        self._cols = {k: (np.concatenate([c, np.full(extra, -1, dtype=np.int32)]), v)
                      for k, (c, v) in self._cols.items()}
        self.pods.extend([None] * extra)
        self.cap = cap

    def namespace_id(self, ns: str) -> int:
        i = self.ns_ids.get(ns)
        if i is None:
            i = self.ns_ids[ns] = len(self.ns_ids)
        return i

    def add(self, pod, node: int) -> None:
        """Row for ``pod`` (a PodInfo) on node column ``node``; replaces an earlier row."""
        uid = pod.uid
        row_of = self.row_of
        if uid in row_of:
            self.remove(uid)
        if self._free:
            r = self._free.pop()
        else:
            if self.n >= self.cap:
                self._grow(self.n + 1)
            r = self.n
            self.n += 1
        row_of[uid] = r
        self.pods[r] = pod
        self.node[r] = node
        ns = self.ns_ids.get(pod.namespace)
        self.ns[r] = ns if ns is not None else self.namespace_id(pod.namespace)
        self.terminating[r] = pod.deleting
        if self._cols:
            labels = pod.pod.metadata.labels
            for key, (col, values) in self._cols.items():
                v = labels.get(key)
                col[r] = -1 if v is None else values.setdefault(v, len(values))
        if pod.constraints is not None:
            self._index(pod, node, 1)
        more = pod._more
        if more is not None and more.legacy_mig:
            self._legacy(node, 1)
        self.generation += 1

    def add_many(self, pods: list, nodes: list[int]) -> None:
        """``add(pod, node)`` for each pair in order (a bulk load, an action's bindings): rows
        and indexes as the one-by-one adds leave them -- free rows first, in the order ``add``
        takes them, then new ones -- the row arrays filled in one go. Pods must not have rows yet."""
        k = len(pods)
        if self._cols or k < 64:
            for pod, node in zip(pods, nodes):
                self.add(pod, node)
            return
        free = self._free
        reused = min(len(free), k)
        rows = free[len(free) - reused:][::-1]          # (``add`` pops the last free row first)
        del free[len(free) - reused:]
        start = self.n
        end = start + k - reused
        if end > self.cap:
            self._grow(end)
        rows.extend(range(start, end))
        self.n = end
        # one pass over the pods (each PodInfo read once: a pass per field costs a cache miss
        # per pod per field on a large list)
        ids, row_of = self.ns_ids, self.row_of
        nss: list[int] = []
        deleting: list[bool] = []
        constrained: list[int] = []
        for i, pod in enumerate(pods):
            ns = ids.get(pod.namespace)
            if ns is None:                          # ids in first-seen order, as ``add`` gives them
                ns = self.namespace_id(pod.namespace)
            nss.append(ns)
            deleting.append(pod.deleting)
            row_of[pod.uid] = rows[i]
            if pod.constraints is not None:
                constrained.append(i)
            more = pod._more
            if more is not None and more.legacy_mig:
                self._legacy(nodes[i], 1)
        if reused:
            at = np.array(rows, dtype=np.intp)
            table = self.pods
            for r, pod in zip(rows, pods):
                table[r] = pod
        else:
            at = slice(start, end)
            self.pods[start:end] = pods
        self.node[at] = nodes
        self.ns[at] = nss
        self.terminating[at] = deleting
        for i in constrained:
            self._index(pods[i], nodes[i], 1)
        self.generation += k

    def node_of(self, uid: str) -> int | None:
        """The node column of the pod's row, None when it has none."""
        r = self.row_of.get(uid)
        return None if r is None else int(self.node[r])

    def remove(self, uid: str) -> None:
        r = self.row_of.pop(uid, None)
        if r is None:
            return
        pod = self.pods[r]
        self._index(pod, int(self.node[r]), -1)
        more = pod._more
        if more is not None and more.legacy_mig:
            self._legacy(int(self.node[r]), -1)
        self.pods[r] = None
        self.node[r] = -1
        self.ns[r] = -1
        for col, _ in self._cols.values():
            col[r] = -1
        self._free.append(r)
        self.generation += 1
        if len(self.ns_ids) + sum(len(v) for _, v in self._cols.values()) > self._vocab_limit:
            self._compact_vocab()

    def vocab_size(self) -> int:
        """Namespace ids and label value ids held (live rows' and the dropped ones' not yet renumbered)."""
        return len(self.ns_ids) + sum(len(v) for _, v in self._cols.values())

    def _compact_vocab(self) -> None:
        """Renumber the namespace ids and each label column's value ids to those live rows
        carry. Meaning-preserving: a row's namespace and label values stay what they were,
        so nothing derived from the table (masks, counts) goes stale; arrays and dicts are
        new objects, so whoever holds the old ones keeps a consistent old view."""
        n = self.n
        got = renumber(self.ns, n, self.ns_ids)
        if got is not None:
            self.ns, self.ns_ids = got
        for key, (col, values) in list(self._cols.items()):
            got = renumber(col, n, values)
            if got is not None:
                self._cols[key] = got
        self._vocab_limit = max(VOCAB_MIN, 2 * self.vocab_size())

    def remove_node(self, node: int) -> None:
        """Forget every row on node column ``node`` (the node is gone)."""
        for r in np.flatnonzero(self.node[: self.n] == node):
            p = self.pods[int(r)]
            if p is not None:
                self.remove(p.uid)

    def _legacy(self, node: int, sign: int) -> None:
        c = self.legacy_mig
        c[node] += sign
        if c[node] <= 0:
            del c[node]

    def _index(self, pod, node: int, sign: int) -> None:
        pc = pod.constraints
        if pc is None:
            return
        for kind, items in ((REQUIRED_ANTI, [(0, t) for t in pc.anti_affinity]),
                            (REQUIRED_AFFINITY, [(0, t) for t in pc.affinity]),
                            (PREFERRED_AFFINITY, pc.preferred_affinity), (PREFERRED_ANTI, pc.preferred_anti)):
            for w, t in items:
                k = (kind, w, t.key)
                ct = self.terms.get(k)
                if ct is None:
                    if sign < 0:
                        continue
                    ct = self.terms[k] = CarriedTerm(kind, w, t)
                ct.nodes[node] += sign
                if ct.nodes[node] <= 0:
                    del ct.nodes[node]
                    if not ct.nodes:
                        del self.terms[k]
        for ip, proto, port in pc.ports:
            by_ip = self.ports.setdefault((proto, port), {})
            c = by_ip.setdefault(ip, Counter())
            c[node] += sign
            if c[node] <= 0:
                del c[node]
                if not c:
                    del by_ip[ip]
                    if not by_ip:
                        del self.ports[(proto, port)]

    # ------------------------------------------------------------------ matching
    def label_column(self, key: str) -> tuple[np.ndarray, dict[str, int]]:
        """int32[n] value id of label ``key`` per row (-1: absent or free row), value -> id."""
        got = self._cols.get(key)
        if got is None:
            col = np.full(self.cap, -1, dtype=np.int32)
            values: dict[str, int] = {}
            for r in range(self.n):
                p = self.pods[r]
                if p is None:
                    continue
                v = p.pod.metadata.labels.get(key)
                if v is not None:
                    col[r] = values.setdefault(v, len(values))
            got = self._cols[key] = (col, values)
        return got[0][: self.n], got[1]

    def rows_matching(self, selector: Selector) -> np.ndarray:
        """bool[n]: live rows whose labels match ``selector``."""
        live = self.node[: self.n] >= 0
        if selector.nothing:
            return np.zeros(self.n, dtype=bool)
        m = live.copy()
        for key, op, values in selector.requirements:
            col, ids = self.label_column(key)
            if op in ("In", "NotIn"):
                want = [ids[v] for v in values if v in ids]
                hit = np.isin(col, want) if want else np.zeros(self.n, dtype=bool)
                m &= hit if op == "In" else ~hit
            elif op == "Exists":
                m &= col >= 0
            else:
                m &= col < 0
        return m

    def rows_in_namespaces(self, names) -> np.ndarray:
        """bool[n]: rows whose namespace is one of ``names``."""
        ids = [self.ns_ids[n] for n in names if n in self.ns_ids]
        if not ids:
            return np.zeros(self.n, dtype=bool)
        return np.isin(self.ns[: self.n], ids)
