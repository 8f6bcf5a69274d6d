"""NodeTable: every node's resources in flat ``(R, N)`` arrays, plus encoded labels and taints.

The arrays are the single source of truth for node resources; ``NodeInfo.idx`` is a column.
Labels are encoded per key as an int32 column of value ids (-1 = absent), taints as a bitset
per node, so a pod's static predicates (readiness, cordon, nodeSelector, required node
affinity, taints) become a handful of vectorized numpy operations, cached per constraint
signature until the node set changes.
"""
from __future__ import annotations

import hashlib

import numpy as np

from kai.api import constants as C
from kai.api.k8s import Node, NodeSelectorRequirement, Pod, Toleration
from kai.api.node_info import NodeInfo, is_mig_node
from kai.api.resources import GPU, ResourceRegistry
from kai.cache.ids import renumber

_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")

#: the label values and taints seen are renumbered to the live nodes' alone once they hold
#: more than twice as many entries as after the last renumbering, and at least this many (a
#: cluster that replaces nodes under fresh names, or taints them with a timestamp, as the
#: cluster autoscaler's ToBeDeletedByClusterAutoscaler, would otherwise keep an id per value
#: ever seen: memory, and a taint check per taint ever seen in every static mask)
VOCAB_MIN = 256


def tolerates(tols: list[Toleration], key: str, value: str, effect: str) -> bool:
    for t in tols:
        if t.effect and t.effect != effect:
            continue
        if not t.key:
            if t.operator == "Exists":
                return True
            continue
        if t.key != key:
            continue
        if t.operator == "Exists" or t.value == value:
            return True
    return False


class NodeTable:
    """Flat per-node arrays and label/taint encodings. Columns are stable until ``compact()``."""

    def __init__(self, registry: ResourceRegistry) -> None:
        self.registry = registry
        self.infos: list[NodeInfo | None] = []
        self.by_name: dict[str, NodeInfo] = {}
        self._free: list[int] = []
        r = len(registry)
        self.allocatable = np.zeros((r, 0))
        self.idle = np.zeros((r, 0))
        self.releasing = np.zeros((r, 0))
        self.avail = np.zeros((r, 0))
        self.gpu_capacity = np.zeros(0)
        self.gpu_memory = np.zeros(0)                  # float64[N]: device memory MiB (label), 0 = unknown
        self.mig = np.zeros(0, dtype=np.uint8)         # uint8[N]: 1 = MIG node (no GPU fractions)
        self.mig_label_key = C.MIG_ENABLED_LABEL        # KAI's --mig-worker-node-label-key
        # shared-GPU groups, one slot per device (see kai/_fast/gpusharing.pxd): (N, D)
        self.dev_used = np.zeros((0, 0))
        self.dev_alloc = np.zeros((0, 0))
        self.dev_rel = np.zeros((0, 0))
        self.dev_from_rel = np.zeros((0, 0), dtype=np.uint8)
        self.group_names: dict[int, dict[int, str]] = {}    # node idx -> {slot: group id}
        self.group_seq = 0                                   # for deterministic new group ids
        self.base_ok = np.zeros(0, dtype=np.uint8)     # in use, Ready and schedulable
        self.cordoned = np.zeros(0, dtype=np.uint8)
        self.not_ready = np.zeros(0, dtype=np.uint8)
        self.in_use = np.zeros(0, dtype=np.uint8)
        self.name_rank = np.zeros(0, dtype=np.int32)
        self._label_keys: dict[str, int] = {}
        self._label_cols: list[np.ndarray] = []
        self._label_values: list[dict[str, int]] = []
        self._numeric_cols: dict[int, np.ndarray] = {}
        self._taints: dict[tuple[str, str, str], int] = {}
        self._taint_bits = np.zeros((0, 1), dtype=np.uint64)
        #: label values and taints held when they are next renumbered (``_compact_vocab``)
        self._vocab_limit = VOCAB_MIN
        self.generation = 0
        #: bumped when a node is added or removed (the column -> node name mapping changed)
        self.layout = 0
        self._mask_cache: dict[tuple, np.ndarray] = {}
        #: what readers derive from the table and keep between sessions (the topology plugin's
        #: domain trees), keyed by them with the generation they were made at: it lives and
        #: dies with this table, so no other table is ever served it
        self.derived: dict[tuple, object] = {}
        self._rank_dirty = False

    # ------------------------------------------------------------------ sizes
    @property
    def n(self) -> int:
        return len(self.infos)

    def _grow(self, count: int) -> None:
        r = len(self.registry)
        pad = lambda a: np.concatenate([a, np.zeros((a.shape[0], count))], axis=1)  # noqa: E731
        self.ensure_width()
        self.allocatable = np.ascontiguousarray(pad(self.allocatable))
        self.idle = np.ascontiguousarray(pad(self.idle))
        self.releasing = np.ascontiguousarray(pad(self.releasing))
        self.avail = np.ascontiguousarray(pad(self.avail))
        z8 = np.zeros(count, dtype=np.uint8)
        self.gpu_capacity = np.concatenate([self.gpu_capacity, np.zeros(count)])
        self.gpu_memory = np.concatenate([self.gpu_memory, np.zeros(count)])
        self.mig = np.concatenate([self.mig, z8])
        d = self.dev_used.shape[1]
        self.dev_used = np.ascontiguousarray(np.vstack([self.dev_used, np.zeros((count, d))]))
        self.dev_alloc = np.ascontiguousarray(np.vstack([self.dev_alloc, np.zeros((count, d))]))
        self.dev_rel = np.ascontiguousarray(np.vstack([self.dev_rel, np.zeros((count, d))]))
        self.dev_from_rel = np.ascontiguousarray(
            np.vstack([self.dev_from_rel, np.zeros((count, d), dtype=np.uint8)]))
        self.base_ok = np.concatenate([self.base_ok, z8])
        self.cordoned = np.concatenate([self.cordoned, z8])
        self.not_ready = np.concatenate([self.not_ready, z8])
        self.in_use = np.concatenate([self.in_use, z8])
        self.name_rank = np.concatenate([self.name_rank, np.zeros(count, dtype=np.int32)])
        self._label_cols = [np.concatenate([c, np.full(count, -1, dtype=np.int32)]) for c in self._label_cols]
        self._taint_bits = np.concatenate(
            [self._taint_bits, np.zeros((count, self._taint_bits.shape[1]), dtype=np.uint64)])
        self._numeric_cols.clear()
        assert r == self.allocatable.shape[0]

    def ensure_width(self) -> None:
        """Add zero rows for extended resources registered since the arrays were made."""
        r = len(self.registry)
        have = self.allocatable.shape[0]
        if have < r:
            extra = np.zeros((r - have, self.allocatable.shape[1]))
            self.allocatable = np.ascontiguousarray(np.vstack([self.allocatable, extra]))
            self.idle = np.ascontiguousarray(np.vstack([self.idle, extra]))
            self.releasing = np.ascontiguousarray(np.vstack([self.releasing, extra]))
            self.avail = np.ascontiguousarray(np.vstack([self.avail, extra]))

    def ensure_devices(self, d: int) -> None:
        """At least ``d`` device slots per node for shared-GPU groups."""
        have = self.dev_used.shape[1]
        if d <= have:
            return
        n = self.dev_used.shape[0]
        pad = lambda a, dt=np.float64: np.ascontiguousarray(  # noqa: E731
            np.hstack([a, np.zeros((n, d - have), dtype=dt)]))
        self.dev_used = pad(self.dev_used)
        self.dev_alloc = pad(self.dev_alloc)
        self.dev_rel = pad(self.dev_rel)
        self.dev_from_rel = pad(self.dev_from_rel, np.uint8)

    def new_group_id(self, node_name: str, slot: int) -> str:
        """A fresh shared-GPU group id ``<node>-gpu<slot>-<n>``: deterministic (a counter, no
        UUID) and a valid label value (<= 63 chars; long node names are cut and hashed)."""
        seq = self.group_seq
        self.group_seq += 1
        gid = f"{node_name}-gpu{slot}-{seq}"
        if len(gid) > 63:
            digest = hashlib.sha1(node_name.encode()).hexdigest()[:8]
            tail = f"-{digest}-gpu{slot}-{seq}"
            gid = node_name[: 63 - len(tail)].rstrip("-.") + tail
        return gid

    # ------------------------------------------------------------------ nodes
    def upsert(self, node: Node) -> NodeInfo:
        """Add a node or update its static facts and allocatable; pods placed on it are kept."""
        name = node.metadata.name
        old = self.by_name.get(name)
        alloc = {}
        for rname, q in node.status.allocatable.items():
            alloc[self.registry.column(rname)] = self.registry.quantity_to_float(rname, q)
        self.ensure_width()
        if old is None:
            if self._free:
                idx = self._free.pop()
            else:
                self._grow(1)
                idx = self.n
                self.infos.append(None)
            info = NodeInfo(node, idx)
            self.infos[idx] = info
            self.by_name[name] = info
            self._rank_dirty = True
            self.layout += 1
        else:
            idx = old.idx
            info = NodeInfo(node, idx)
            self.infos[idx] = info
            self.by_name[name] = info
        used = self.allocatable[:, idx] - self.idle[:, idx]
        new_alloc = np.zeros(self.allocatable.shape[0])
        for col, v in alloc.items():
            new_alloc[col] = v
        self.allocatable[:, idx] = new_alloc
        self.idle[:, idx] = new_alloc - used
        self.avail[:, idx] = self.idle[:, idx] + self.releasing[:, idx]
        self.gpu_capacity[idx] = info.gpu_count_label or new_alloc[GPU]
        self.gpu_memory[idx] = info.gpu_memory_mib if info.gpu_memory_synced else 0.0
        self.mig[idx] = 1 if is_mig_node(info.labels, self.mig_label_key) else 0
        # two slots per device: a group whose fractions are all releasing keeps its slot while
        # a new group is pipelined onto that (releasing) device
        self.ensure_devices(2 * int(max(new_alloc[GPU], info.gpu_count_label, 0)))
        self.in_use[idx] = 1
        self.cordoned[idx] = 1 if info.unschedulable else 0
        self.not_ready[idx] = 0 if info.ready else 1
        self.base_ok[idx] = 1 if (info.ready) else 0
        self._encode_labels(info)
        self._encode_taints(info)
        self._changed()
        return info

    def upsert_many(self, nodes: list[Node]) -> None:
        """Add many nodes with one array allocation (initial list)."""
        new = [n for n in nodes if n.metadata.name not in self.by_name]
        if new:
            start = self.n
            self._grow(len(new))
            self.infos.extend([None] * len(new))
            for k, node in enumerate(new):
                self._free.append(start + len(new) - 1 - k)
        names = [n.metadata.name for n in nodes]
        if len(new) == len(nodes) and len(set(names)) == len(names):
            self._add_new(new)
        else:
            for node in nodes:
                self.upsert(node)

    def _add_new(self, nodes: list[Node]) -> None:
        """``upsert`` of each of ``nodes`` in order, all new and with fresh columns from the free
        list (``upsert_many``): the same columns, arrays, label and taint ids, with the array
        writes gathered into one assignment per array."""
        registry = self.registry
        column, to_float = registry.column, registry.quantity_to_float
        idxs, allocs, infos = [], [], []
        labels_at: dict[int, tuple[list[int], list[int]]] = {}     # label key id -> (columns, value ids)
        for node in nodes:
            alloc = {}
            for rname, q in node.status.allocatable.items():
                alloc[column(rname)] = to_float(rname, q)
            idx = self._free.pop()
            info = NodeInfo(node, idx)
            self.infos[idx] = info
            self.by_name[info.name] = info
            idxs.append(idx)
            allocs.append(alloc)
            infos.append(info)
            # _encode_labels (a fresh column is -1 for every label already)
            for k, vid in self._label_ids(info):
                at = labels_at.get(k)
                if at is None:
                    at = labels_at[k] = ([], [])
                at[0].append(idx)
                at[1].append(vid)
            if info.taints:
                self._encode_taints(info)
        if not nodes:
            return
        self.ensure_width()
        cols = np.array(idxs, dtype=np.intp)
        new_alloc = np.zeros((self.allocatable.shape[0], len(nodes)))
        for j, alloc in enumerate(allocs):
            for col, v in alloc.items():
                new_alloc[col, j] = v
        used = self.allocatable[:, cols] - self.idle[:, cols]
        self.allocatable[:, cols] = new_alloc
        self.idle[:, cols] = new_alloc - used
        self.avail[:, cols] = self.idle[:, cols] + self.releasing[:, cols]
        gpus = new_alloc[GPU]
        self.gpu_capacity[cols] = [info.gpu_count_label or gpus[j] for j, info in enumerate(infos)]
        self.gpu_memory[cols] = [info.gpu_memory_mib if info.gpu_memory_synced else 0.0 for info in infos]
        self.mig[cols] = [1 if is_mig_node(info.labels, self.mig_label_key) else 0 for info in infos]
        self.ensure_devices(max(2 * int(max(gpus[j], info.gpu_count_label, 0)) for j, info in enumerate(infos)))
        self.in_use[cols] = 1
        self.cordoned[cols] = [1 if info.unschedulable else 0 for info in infos]
        self.not_ready[cols] = [0 if info.ready else 1 for info in infos]
        self.base_ok[cols] = [1 if info.ready else 0 for info in infos]
        for k, (at, vids) in labels_at.items():
            self._label_cols[k][at] = vids
        self._rank_dirty = True
        self.layout += len(nodes)
        self.generation += len(nodes) - 1
        # new nodes' ids are all live: no renumbering for them (a list of 50,000 nodes would
        # otherwise pay one at the end)
        self._vocab_limit = max(self._vocab_limit, 2 * self.vocab_size())
        self._changed()

    def remove(self, name: str) -> NodeInfo | None:
        info = self.by_name.pop(name, None)
        if info is None:
            return None
        idx = info.idx
        self.infos[idx] = None
        for a in (self.allocatable, self.idle, self.releasing, self.avail):
            a[:, idx] = 0.0
        self.gpu_capacity[idx] = 0
        self.gpu_memory[idx] = 0.0
        self.mig[idx] = 0
        self.dev_used[idx] = self.dev_alloc[idx] = self.dev_rel[idx] = 0.0
        self.dev_from_rel[idx] = 0
        self.group_names.pop(idx, None)
        self.base_ok[idx] = self.in_use[idx] = self.cordoned[idx] = self.not_ready[idx] = 0
        for col in self._label_cols:
            col[idx] = -1
        self._taint_bits[idx, :] = 0
        self._free.append(idx)
        self._rank_dirty = True
        self.layout += 1
        self._changed()
        return info

    def set_mig_label_key(self, key: str) -> None:
        """Read MIG nodes from label ``key`` from now on (re-reads every node when it changes)."""
        if key == self.mig_label_key:
            return
        self.mig_label_key = key
        for info in self.infos:
            if info is not None:
                self.mig[info.idx] = 1 if is_mig_node(info.labels, key) else 0

    def has_label(self, key: str) -> np.ndarray:
        """bool[N]: nodes that carry label ``key`` (any value)."""
        return self.label_column(key)[0] >= 0

    def _changed(self) -> None:
        if sum(map(len, self._label_values)) + len(self._taints) > self._vocab_limit:
            self._compact_vocab()
        self.generation += 1
        self._mask_cache.clear()
        self._numeric_cols.clear()

    def vocab_size(self) -> int:
        """Label value ids and taint ids held (live nodes' and the dropped ones' not yet renumbered)."""
        return sum(map(len, self._label_values)) + len(self._taints)

    def _compact_vocab(self) -> None:
        """Renumber each label key's values and the taints to those the live nodes carry, in
        their old order (ids of values still carried keep their relative order). Columns,
        value dicts and the taint bitset are new objects: a reader that kept the old ones
        (keyed by ``generation``, which the caller bumps) keeps a consistent old view."""
        n = self.n
        for k, col in enumerate(self._label_cols):
            got = renumber(col, n, self._label_values[k])
            if got is not None:
                self._label_cols[k], self._label_values[k] = got
        if self._taints:
            bits = self._taint_bits[:n]
            words = np.bitwise_or.reduce(bits, axis=0) if n else np.zeros(bits.shape[1], dtype=np.uint64)
            kept = [(t, tid) for t, tid in self._taints.items()
                    if int(words[tid // 64]) >> (tid % 64) & 1]
            if len(kept) < len(self._taints):
                new_bits = np.zeros((self._taint_bits.shape[0], max(1, (len(kept) + 63) // 64)), dtype=np.uint64)
                taints = {}
                for j, (t, tid) in enumerate(kept):
                    has = (self._taint_bits[:, tid // 64] >> np.uint64(tid % 64)) & np.uint64(1)
                    new_bits[:, j // 64] |= has << np.uint64(j % 64)
                    taints[t] = j
                self._taints, self._taint_bits = taints, new_bits
        self._numeric_cols.clear()
        self._mask_cache.clear()
        self._vocab_limit = max(VOCAB_MIN, 2 * self.vocab_size())

    def refresh_rank(self) -> None:
        """Recompute name ranks (node-name tie-break) after nodes were added or removed."""
        if not self._rank_dirty:
            return
        live = [(info.name, info.idx) for info in self.infos if info is not None]
        live.sort()
        rank = np.full(self.n, np.iinfo(np.int32).max, dtype=np.int32)
        for r, (_, idx) in enumerate(live):
            rank[idx] = r
        self.name_rank = rank
        self._rank_dirty = False

    def nodes(self):
        return (info for info in self.infos if info is not None)

    # ------------------------------------------------------------------ labels / taints
    def _encode_labels(self, info: NodeInfo) -> None:
        idx = info.idx
        for col in self._label_cols:
            col[idx] = -1
        for k, vid in self._label_ids(info):
            self._label_cols[k][idx] = vid

    def _label_ids(self, info: NodeInfo) -> list[tuple[int, int]]:
        """(key id, value id) of each of the node's labels, the hostname label implied by its
        name; new keys get a column (all -1) and new values an id, in first-seen order."""
        labels = dict(info.labels)
        labels.setdefault(C.HOSTNAME_LABEL, info.name)
        out = []
        for key, value in labels.items():
            k = self._label_keys.get(key)
            if k is None:
                k = len(self._label_cols)
                self._label_keys[key] = k
                self._label_cols.append(np.full(self.n, -1, dtype=np.int32))
                self._label_values.append({})
            vals = self._label_values[k]
            out.append((k, vals.setdefault(value, len(vals))))
        return out

    def _encode_taints(self, info: NodeInfo) -> None:
        idx = info.idx
        self._taint_bits[idx, :] = 0
        for t in info.taints:
            if t.effect not in _BLOCKING_EFFECTS:
                continue
            tid = self._taints.setdefault((t.key, t.value, t.effect), len(self._taints))
            word = tid // 64
            if word >= self._taint_bits.shape[1]:
                self._taint_bits = np.concatenate(
                    [self._taint_bits, np.zeros((self.n, word + 1 - self._taint_bits.shape[1]), dtype=np.uint64)], axis=1)
            self._taint_bits[idx, word] |= np.uint64(1) << np.uint64(tid % 64)

    def label_column(self, key: str) -> tuple[np.ndarray, list[str]]:
        """int32[N] value ids of label ``key`` per node (-1: node lacks the label; the hostname
        label is implied by the node name) and the values by id. A fresh all -1 column and no
        values when no node has the label. The column is live: read it, don't write it."""
        k = self._label_keys.get(key)
        if k is None:
            return np.full(self.n, -1, dtype=np.int32), []
        values = [""] * len(self._label_values[k])
        for v, vid in self._label_values[k].items():
            values[vid] = v
        return self._label_cols[k], values

    # ------------------------------------------------------------------ predicates
    def _expr_mask(self, e: NodeSelectorRequirement) -> np.ndarray:
        k = self._label_keys.get(e.key)
        n = self.n
        col = self._label_cols[k] if k is not None else np.full(n, -1, dtype=np.int32)
        op = e.operator
        if op in ("In", "NotIn"):
            vals = self._label_values[k] if k is not None else {}
            ids = [vals[v] for v in e.values if v in vals]
            m = np.isin(col, ids) if ids else np.zeros(n, dtype=bool)
            return m if op == "In" else ~m
        if op == "Exists":
            return col >= 0
        if op == "DoesNotExist":
            return col < 0
        if op in ("Gt", "Lt"):
            try:
                bound = int(e.values[0])
            except (IndexError, ValueError):
                return np.zeros(n, dtype=bool)
            num = self._numeric(k)
            with np.errstate(invalid="ignore"):
                return (num > bound) if op == "Gt" else (num < bound)
        return np.zeros(n, dtype=bool)

    def _numeric(self, k: int | None) -> np.ndarray:
        if k is None:
            return np.full(self.n, np.nan)
        got = self._numeric_cols.get(k)
        if got is None:
            lookup = np.full(len(self._label_values[k]) + 1, np.nan)
            for v, vid in self._label_values[k].items():
                try:
                    lookup[vid] = int(v)
                except ValueError:
                    pass
            col = self._label_cols[k]
            got = np.where(col >= 0, lookup[col], np.nan)
            self._numeric_cols[k] = got
        return got

    def _field_mask(self, e: NodeSelectorRequirement) -> np.ndarray:
        if e.key != "metadata.name" or e.operator not in ("In", "NotIn"):
            return np.zeros(self.n, dtype=bool)
        m = np.zeros(self.n, dtype=bool)
        for v in e.values:
            info = self.by_name.get(v)
            if info is not None:
                m[info.idx] = True
        return m if e.operator == "In" else ~m

    def selector_mask(self, pod: Pod) -> np.ndarray:
        """Nodes matching nodeSelector and required node affinity (bool[N])."""
        n = self.n
        m = np.ones(n, dtype=bool)
        for key, value in pod.spec.node_selector.items():
            m &= self._expr_mask(NodeSelectorRequirement(key=key, operator="In", values=[value]))
        na = pod.spec.affinity.node_affinity if pod.spec.affinity else None
        req = na.required_during_scheduling_ignored_during_execution if na else None
        if req is not None:
            any_term = np.zeros(n, dtype=bool)
            for term in req.node_selector_terms:
                if not term.match_expressions and not term.match_fields:
                    continue
                t = np.ones(n, dtype=bool)
                for e in term.match_expressions:
                    t &= self._expr_mask(e)
                for e in term.match_fields:
                    t &= self._field_mask(e)
                any_term |= t
            m &= any_term
        return m

    def preferred_affinity_weights(self, pod: Pod) -> np.ndarray | None:
        """float64[N]: the summed weights of the pod's preferred node-affinity terms each node
        matches (kube-scheduler's NodeAffinity raw score; empty or zero-weight terms skipped),
        or None without such terms. Cached per term set until the nodes change."""
        na = pod.spec.affinity.node_affinity if pod.spec.affinity else None
        terms = [t for t in (na.preferred_during_scheduling_ignored_during_execution if na else ())
                 if t.weight and (t.preference.match_expressions or t.preference.match_fields)]
        if not terms:
            return None
        key = ("preferred", tuple((t.weight, tuple((e.key, e.operator, tuple(e.values))
                                                    for e in t.preference.match_expressions),
                                   tuple((e.key, e.operator, tuple(e.values)) for e in t.preference.match_fields))
                                  for t in terms))
        got = self._mask_cache.get(key)
        if got is None:
            got = np.zeros(self.n)
            for t in terms:
                m = np.ones(self.n, dtype=bool)
                for e in t.preference.match_expressions:
                    m &= self._expr_mask(e)
                for e in t.preference.match_fields:
                    m &= self._field_mask(e)
                got += m * float(t.weight)
            self._mask_cache[key] = got
        return got

    def taint_mask(self, pod: Pod) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
        """Nodes whose NoSchedule/NoExecute taints the pod tolerates, and the untolerated taints."""
        tols = pod.spec.tolerations
        allowed = np.zeros(self._taint_bits.shape[1], dtype=np.uint64)
        untolerated = []
        for (key, value, effect), tid in self._taints.items():
            if tolerates(tols, key, value, effect):
                allowed[tid // 64] |= np.uint64(1) << np.uint64(tid % 64)
            else:
                untolerated.append((key, value, effect))
        bad = (self._taint_bits & ~allowed).any(axis=1)
        return ~bad, untolerated

    def static_mask(self, pod: Pod, signature: tuple) -> np.ndarray:
        """uint8[N]: nodes that pass every resource-independent predicate for this pod."""
        got = self._mask_cache.get(signature)
        if got is not None:
            return got
        m = self.base_ok.astype(bool)
        if self.cordoned.any():
            ok_cordon = tolerates(pod.spec.tolerations, C.UNSCHEDULABLE_TAINT, "", "NoSchedule")
            if not ok_cordon:
                m &= ~self.cordoned.astype(bool)
        m &= self.selector_mask(pod)
        m &= self.taint_mask(pod)[0]
        out = np.ascontiguousarray(m, dtype=np.uint8)
        self._mask_cache[signature] = out
        return out

    def taint_name(self, taint: tuple[str, str, str]) -> str:
        key, value, effect = taint
        return f"{key}={value}:{effect}" if value else f"{key}:{effect}"

    def untolerated_counts(self, pod: Pod, among: np.ndarray) -> dict[str, int]:
        """For explanations: per untolerated taint, how many of ``among`` nodes carry it."""
        _, untolerated = self.taint_mask(pod)
        out = {}
        for t in untolerated:
            tid = self._taints[t]
            has = (self._taint_bits[:, tid // 64] & (np.uint64(1) << np.uint64(tid % 64))) != 0
            c = int((has & among).sum())
            if c:
                out[self.taint_name(t)] = c
        return out
