"""StorageStore: the cluster's storage objects, the scheduler's assumed volume bindings, and
node masks derived from them.

Holds PersistentVolumes, PersistentVolumeClaims, StorageClasses, CSINodes, CSIDrivers,
CSIStorageCapacities and VolumeAttachments (keyed like the informers: ``name`` or
``namespace/name``) and ConfigMap names per namespace, fed one event at a time by the controller
(``kai.controller.main``) or in bulk from manifests (``kai simulate``). ``ClusterState.storage``
is the instance; the volume plugins (``kai.plugins.volumebinding``, ``kai.plugins.configmaps``)
read it through the session.

Like kube-scheduler's assume cache, the store remembers what committed placements decided
for volumes (:meth:`assume`: a PV taken by a claim, a claim to be provisioned on a node) until
the watch shows the API caught up or the binder reports failure (:meth:`release`), so the next
cycle never hands the same PV to another claim.

Node masks (a PV's node affinity, VolumeZone's labels, a class's allowed topologies, a
CSIStorageCapacity's node topology) are bool[N] over the NodeTable's columns, cached until the
object or the node table changes.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from kai.api.k8s import (Affinity, LabelSelector, NodeAffinity, NodeSelector, NodeSelectorRequirement,
                         NodeSelectorTerm, Pod, PodSpec)
from kai.api.storage import (ANN_SELECTED_NODE, GA_LABEL, NAMESPACED, STORAGE_KINDS, ZONE_LABELS, ClaimPlan,
                             PersistentVolume, PersistentVolumeClaim, TopologySelectorTerm, volume_class,
                             zone_topologies)

DELETED = "DELETED"


def _key(kind: str, obj: Any) -> str:
    m = obj.metadata
    return f"{m.namespace or 'default'}/{m.name}" if kind in NAMESPACED else m.name


def _terms_mask(table, terms: list[NodeSelectorTerm]) -> np.ndarray:
    """bool[N]: nodes matching any of ``terms`` (the table's nodeSelector/affinity semantics)."""
    if not terms:
        return np.zeros(table.n, dtype=bool)
    pod = Pod(spec=PodSpec(affinity=Affinity(node_affinity=NodeAffinity(
        required_during_scheduling_ignored_during_execution=NodeSelector(node_selector_terms=terms)))))
    return table.selector_mask(pod)


def node_affinity_terms(required: NodeSelector) -> tuple[list[NodeSelectorTerm], bool]:
    """A PV's required node affinity as kube-scheduler's CheckNodeAffinity evaluates it: against
    the node's labels only (a node object without a name), so ``matchFields`` on metadata.name
    never match ``In`` and always match ``NotIn``. Returns (label-only terms, matches_all)."""
    out = []
    for t in required.node_selector_terms:
        if not t.match_expressions and not t.match_fields:
            continue                                  # an empty term matches nothing
        if any(f.key != "metadata.name" or f.operator != "NotIn" for f in t.match_fields):
            continue                                  # can never match a nameless node
        if not t.match_expressions:
            return [], True                           # only NotIn on the (empty) name: always true
        out.append(NodeSelectorTerm(match_expressions=list(t.match_expressions)))
    return out, False


def selector_terms(sel: LabelSelector) -> list[NodeSelectorTerm]:
    """A label selector as one node selector term (same operators); [] for an empty selector."""
    exprs = [NodeSelectorRequirement(key=k, operator="In", values=[v]) for k, v in sel.match_labels.items()]
    exprs += [NodeSelectorRequirement(key=e.key, operator=e.operator, values=list(e.values))
              for e in sel.match_expressions]
    return [NodeSelectorTerm(match_expressions=exprs)] if exprs else []


def topology_terms(terms: list[TopologySelectorTerm]) -> list[NodeSelectorTerm]:
    """StorageClass allowedTopologies as node selector terms (each requirement is ``key In values``)."""
    return [NodeSelectorTerm(match_expressions=[NodeSelectorRequirement(key=r.key, operator="In",
                                                                        values=list(r.values))
                                                for r in t.match_label_expressions])
            for t in terms if t.match_label_expressions]


class _LabelIndex:
    """One node label, for a node-table generation: each node's value id, and the nodes per value."""

    def __init__(self, table, key: str) -> None:
        self.col, values = table.label_column(key)
        self.col = self.col.copy()
        self.id_of = {v: i for i, v in enumerate(values)}
        self.values = values
        live = table.in_use.astype(bool) if table.in_use.shape[0] == self.col.shape[0] else None
        order = np.argsort(self.col, kind="stable")
        ids = self.col[order]
        if live is not None:
            keep = live[order]
            order, ids = order[keep], ids[keep]
        bounds = np.searchsorted(ids, np.arange(len(values) + 1))
        self.nodes_of = {i: order[bounds[i]:bounds[i + 1]].astype(np.int32) for i in range(len(values))}
        self._numeric: np.ndarray | None = None

    def nodes_with(self, values: list[str]) -> np.ndarray:
        parts = [self.nodes_of[self.id_of[v]] for v in dict.fromkeys(values) if v in self.id_of]
        if not parts:
            return np.zeros(0, dtype=np.int32)
        return parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))

    def test(self, e: NodeSelectorRequirement, idx: np.ndarray) -> np.ndarray:
        """bool per node of ``idx``: does it meet requirement ``e`` (a node selector operator)?"""
        col = self.col[idx]
        op = e.operator
        if op in ("In", "NotIn"):
            hit = np.isin(col, [self.id_of[v] for v in e.values if v in self.id_of])
            return hit if op == "In" else ~hit
        if op == "Exists":
            return col >= 0
        if op == "DoesNotExist":
            return col < 0
        if op in ("Gt", "Lt"):
            try:
                bound = int(e.values[0])
            except (IndexError, ValueError):
                return np.zeros(idx.size, dtype=bool)
            if self._numeric is None:
                num = np.full(len(self.values) + 1, np.nan)
                for i, v in enumerate(self.values):
                    try:
                        num[i] = int(v)
                    except ValueError:
                        pass
                self._numeric = num
            vals = np.where(col >= 0, self._numeric[col], np.nan)
            with np.errstate(invalid="ignore"):
                return vals > bound if op == "Gt" else vals < bound
        return np.zeros(idx.size, dtype=bool)


class StorageStore:
    """Storage objects by kind, ConfigMap names, assumed bindings and cached node masks."""

    def __init__(self) -> None:
        self.volumes: dict[str, PersistentVolume] = {}
        self.claims: dict[str, PersistentVolumeClaim] = {}
        self.classes: dict[str, Any] = {}
        self.csinodes: dict[str, Any] = {}
        self.drivers: dict[str, Any] = {}
        self.capacities: dict[str, Any] = {}
        self.attachments: dict[str, Any] = {}
        self.configmaps: dict[str, set[str]] = {}          # namespace -> ConfigMap names
        self._by_kind = {"PersistentVolume": self.volumes, "PersistentVolumeClaim": self.claims,
                         "StorageClass": self.classes, "CSINode": self.csinodes, "CSIDriver": self.drivers,
                         "CSIStorageCapacity": self.capacities, "VolumeAttachment": self.attachments}
        #: storage class name -> PV names (incremental index for FindMatchingVolume's candidates)
        self.by_class: dict[str, set[str]] = {}
        #: claim key -> PV names whose claimRef names it (pre-bound, or bound)
        self.claimed_by: dict[str, set[str]] = {}
        #: bumped whenever an object or an assumption changes (sessions cache per version)
        self.version = 0
        # kube-scheduler's assume cache: pv -> (claim key, claim uid, pod uid); claim -> (node, pod uid)
        self._assumed_pv: dict[str, tuple[str, str, str]] = {}
        self._assumed_by_claim: dict[str, set[str]] = {}            # claim key -> assumed PVs
        self._assumed_node: dict[str, tuple[str, str]] = {}
        self._masks: dict[tuple, tuple[int, np.ndarray]] = {}

    @staticmethod
    def handles(kind: str) -> bool:
        return kind in STORAGE_KINDS

    # ------------------------------------------------------------------ events
    def apply(self, kind: str, etype: str, obj: Any) -> None:
        """One informer event (ADDED / MODIFIED / DELETED)."""
        if kind == "ConfigMap":
            ns = obj.metadata.namespace or "default"
            names = self.configmaps.setdefault(ns, set())
            if etype == DELETED:
                names.discard(obj.metadata.name)
            else:
                names.add(obj.metadata.name)
            return
        table = self._by_kind[kind]
        key = _key(kind, obj)
        old = table.pop(key, None) if etype == DELETED else table.get(key)
        if etype != DELETED:
            table[key] = obj
        self.version += 1
        if kind == "PersistentVolume":
            self._index_volume(key, old, None if etype == DELETED else obj)
            if etype == DELETED or obj.spec.claim_ref is not None:
                self._forget_pv(key)                 # the API is authoritative again
        elif kind == "PersistentVolumeClaim":
            if etype == DELETED or obj.spec.volume_name or ANN_SELECTED_NODE in obj.metadata.annotations:
                self._assumed_node.pop(key, None)

    def _index_volume(self, name: str, old: PersistentVolume | None, new: PersistentVolume | None) -> None:
        if old is not None:
            self.by_class.get(volume_class(old), set()).discard(name)
            ref = old.spec.claim_ref
            if ref is not None:
                self.claimed_by.get(f"{ref.namespace or 'default'}/{ref.name}", set()).discard(name)
        if new is not None:
            self.by_class.setdefault(volume_class(new), set()).add(name)
            ref = new.spec.claim_ref
            if ref is not None:
                self.claimed_by.setdefault(f"{ref.namespace or 'default'}/{ref.name}", set()).add(name)

    def load(self, objects: dict[str, Iterable[Any]]) -> None:
        """Bulk load (the informers' first list, or manifests): ``{kind: objects}``."""
        for kind, objs in objects.items():
            if self.handles(kind):
                for o in objs:
                    self.apply(kind, "ADDED", o)

    def __len__(self) -> int:
        return sum(len(t) for t in self._by_kind.values()) + sum(len(v) for v in self.configmaps.values())

    def has_configmap(self, namespace: str, name: str) -> bool:
        return name in self.configmaps.get(namespace, ())

    # ------------------------------------------------------------------ assume cache
    def assume(self, pod_uid: str, plans: Iterable[ClaimPlan], node: str) -> None:
        """A placement was committed: its PVs are taken and its provisioned claims pinned to ``node``
        until the watch shows the binder's writes (or :meth:`release`)."""
        for p in plans:
            if p.volume:
                self._forget_pv(p.volume)
                self._assumed_pv[p.volume] = (p.key, p.uid, pod_uid)
                self._assumed_by_claim.setdefault(p.key, set()).add(p.volume)
            else:
                self._assumed_node[p.key] = (node, pod_uid)
            self.version += 1

    def release(self, pod_uid: str) -> None:
        """The binder gave up on the pod: forget what its placement assumed."""
        for pv in [k for k, v in self._assumed_pv.items() if v[2] == pod_uid]:
            self._forget_pv(pv)
            self.version += 1
        for c in [k for k, v in self._assumed_node.items() if v[1] == pod_uid]:
            del self._assumed_node[c]
            self.version += 1

    def volume_claim(self, pv: PersistentVolume) -> tuple[str, str] | None:
        """(claim key, claim uid) the PV is taken by: its claimRef, else an assumed binding."""
        ref = pv.spec.claim_ref
        if ref is not None:
            return f"{ref.namespace or 'default'}/{ref.name}", ref.uid
        got = self._assumed_pv.get(pv.metadata.name)
        return (got[0], got[1]) if got is not None else None

    def _forget_pv(self, pv: str) -> None:
        got = self._assumed_pv.pop(pv, None)
        if got is not None:
            pvs = self._assumed_by_claim.get(got[0])
            if pvs is not None:
                pvs.discard(pv)
                if not pvs:
                    del self._assumed_by_claim[got[0]]

    def assumed_volumes(self, claim_key: str) -> list[str]:
        return sorted(self._assumed_by_claim.get(claim_key, ()))

    def selected_node(self, pvc: PersistentVolumeClaim, key: str) -> str | None:
        """The node a delayed-binding claim is pinned to: its selected-node annotation, else an
        assumed provisioning."""
        got = pvc.metadata.annotations.get(ANN_SELECTED_NODE)
        if got is not None:
            return got
        a = self._assumed_node.get(key)
        return a[0] if a is not None else None

    # ------------------------------------------------------------------ node masks
    def _cached(self, key: tuple, table, build) -> np.ndarray:
        got = self._masks.get(key)
        if got is not None and got[0] == table.generation:
            return got[1]
        m = build()
        m.flags.writeable = False
        if len(self._masks) > 50_000:
            self._masks.clear()
        self._masks[key] = (table.generation, m)
        return m

    def _labels(self, table, key: str) -> "_LabelIndex":
        got = self._masks.get(("labels", key))
        if got is None or got[0] != table.generation:
            got = (table.generation, _LabelIndex(table, key))
            self._masks[("labels", key)] = got                  # type: ignore[assignment]
        return got[1]                                           # type: ignore[return-value]

    def _term_nodes(self, table, term: NodeSelectorTerm) -> np.ndarray | None:
        """int32 node indices matching a term's expressions, found from its first ``In``
        requirement's values (an index lookup) and filtered by the others; None: no ``In``."""
        first = next((e for e in term.match_expressions if e.operator == "In"), None)
        if first is None:
            return None
        lab = self._labels(table, first.key)
        idx = lab.nodes_with(first.values)
        for e in term.match_expressions:
            if e is first or idx.size == 0:
                continue
            idx = idx[self._labels(table, e.key).test(e, idx)]
        return idx

    def volume_node_idx(self, pv: PersistentVolume, table) -> np.ndarray | None:
        """int32 indices of the nodes the PV's required node affinity admits (None: every node).

        kube-scheduler's CheckNodeAffinity semantics (:func:`node_affinity_terms`). Terms with an
        ``In`` requirement (a local PV's ``kubernetes.io/hostname In [node]``) are answered from a
        per-label index of the node table, so a cluster of local PVs costs O(PVs), not O(PVs x N)."""
        na = pv.spec.node_affinity
        if na is None or na.required is None:
            return None
        key = ("pv-idx", pv.metadata.name, pv.metadata.resource_version, id(pv))

        def build():
            terms, everything = node_affinity_terms(na.required)
            if everything:
                return np.flatnonzero(table.in_use).astype(np.int32)
            parts = [self._term_nodes(table, t) for t in terms]
            if any(p is None for p in parts):
                return np.flatnonzero(_terms_mask(table, terms)).astype(np.int32)
            if not parts:
                return np.zeros(0, dtype=np.int32)
            return np.unique(np.concatenate(parts)).astype(np.int32) if len(parts) > 1 else parts[0]
        return self._cached(key, table, build)

    def volume_nodes(self, pv: PersistentVolume, table) -> np.ndarray | None:
        """bool[N]: nodes the PV's required node affinity admits (None: every node)."""
        na = pv.spec.node_affinity
        if na is None or na.required is None:
            return None
        key = ("pv", pv.metadata.name, pv.metadata.resource_version, id(pv))

        def build():
            m = np.zeros(table.n, dtype=bool)
            m[self.volume_node_idx(pv, table)] = True
            return m
        return self._cached(key, table, build)

    def zone_nodes(self, pv: PersistentVolume, table) -> np.ndarray | None:
        """bool[N]: nodes VolumeZone admits for the PV (None: the PV has no zone labels)."""
        topo = zone_topologies(pv)
        if not topo:
            return None
        key = ("zone", pv.metadata.name, pv.metadata.resource_version, id(pv))

        def build():
            cols = {k: table.label_column(k) for k in ZONE_LABELS}
            has_any = np.zeros(table.n, dtype=bool)
            for col, _ in cols.values():
                has_any |= col >= 0
            ok = np.ones(table.n, dtype=bool)
            for k, values in topo:
                col, names = cols[k]
                ga_col, ga_names = cols.get(GA_LABEL.get(k, k))
                hit = np.isin(col, [i for i, v in enumerate(names) if v in values]) if names else \
                    np.zeros(table.n, dtype=bool)
                ga_hit = np.isin(ga_col, [i for i, v in enumerate(ga_names) if v in values]) if ga_names else \
                    np.zeros(table.n, dtype=bool)
                ok &= np.where(col >= 0, hit, ga_hit)
            return ~has_any | ok
        return self._cached(key, table, build)

    def topology_nodes(self, class_name: str, table) -> np.ndarray:
        """bool[N]: nodes a StorageClass's allowedTopologies admit (every node when it has none)."""
        sc = self.classes[class_name]
        key = ("class", class_name, sc.metadata.resource_version, id(sc))

        def build():
            if not sc.allowed_topologies:
                return np.ones(table.n, dtype=bool)
            return _terms_mask(table, topology_terms(sc.allowed_topologies))
        return self._cached(key, table, build)

    def selector_nodes(self, owner: tuple, sel: LabelSelector | None, table) -> np.ndarray:
        """bool[N]: nodes whose labels match ``sel`` (None matches no node: CSIStorageCapacity)."""
        def build():
            if sel is None:
                return np.zeros(table.n, dtype=bool)
            terms = selector_terms(sel)
            return np.ones(table.n, dtype=bool) if not terms else _terms_mask(table, terms)
        return self._cached(("sel",) + owner, table, build)

    # ------------------------------------------------------------------ CSI limits
    def volume_limits(self, table) -> dict[str, np.ndarray]:
        """driver -> int64[N] CSINode ``allocatable.count`` per node (-1: no limit)."""
        key = ("limits", self.version)
        got = self._masks.get(key)
        if got is not None and got[0] == table.generation:
            return got[1]
        out: dict[str, np.ndarray] = {}
        for name, cn in self.csinodes.items():
            info = table.by_name.get(name)
            if info is None:
                continue
            for d in cn.spec.drivers or ():
                if d.allocatable is not None and d.allocatable.count is not None:
                    arr = out.get(d.name)
                    if arr is None:
                        arr = out[d.name] = np.full(table.n, -1, dtype=np.int64)
                    arr[info.idx] = d.allocatable.count
        for k in [k for k in self._masks if k[0] == "limits"]:
            del self._masks[k]
        self._masks[key] = (table.generation, out)        # type: ignore[assignment]
        return out


__all__ = ["StorageStore", "node_affinity_terms", "selector_terms", "topology_terms"]
