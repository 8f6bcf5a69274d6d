"""volumebinding: kube-scheduler's volume filters as NodePredicates, over the flat node arrays.

Four predicates, each with kube-scheduler's plugin name and reasons, share one
:class:`VolumeSession` per scheduling session (registered by ``kai.plugins.predicates``):

- ``VolumeBinding``: every PVC-backed volume (``persistentVolumeClaim`` and generic
  ``ephemeral``) must have its claim; a claim bound to a PV restricts the pod to the PV's node
  affinity; an unbound claim of an Immediate class makes the pod wait; an unbound
  WaitForFirstConsumer claim needs, on the node, a matching available PV (FindMatchingVolume:
  class, size, access modes, selector, volume mode, node affinity; the smallest fits) or a
  class that can provision there (provisioner, allowedTopologies, CSIStorageCapacity). A claim
  whose ``volume.kubernetes.io/selected-node`` is set is pinned to that node.
- ``VolumeZone``: a bound PV's zone/region labels must match the node's.
- ``VolumeRestrictions``: a ReadWriteOncePod claim used by another pod makes the pod wait.
- ``NodeVolumeLimits``: per CSI driver, the unique volumes on the node plus the pod's new ones
  must fit CSINode ``allocatable.count``.

What a placement takes is recorded through the session's allocate/deallocate handlers: the PV
chosen per claim (no two claims of a session share one), a claim's node for provisioning,
ReadWriteOncePod users and CSI volumes per node; a rolled-back gang gives all of it back. The
decision for a placed pod is ``PodInfo.volume_plan`` (:class:`kai.api.storage.ClaimPlan`), which
the binder carries out before binding the pod (``kai.cache.binder``, VolumeBinding's PreBind).
A pure-Python reference of the same rules, node by node, is in tests/plugins/volume_reference.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import numpy as np

from kai.api import constants as C
from kai.api.storage import (CLAIM_LOST, READ_WRITE_ONCE_POD, VOLUME_AVAILABLE, WAIT_FOR_FIRST_CONSUMER,
                             ClaimPlan, PersistentVolume, PersistentVolumeClaim, access_modes_ok, claim_class,
                             is_bound_to_claim, is_controlled_by, is_fully_bound, label_selector_matches,
                             pod_claims, requested_storage, capacity_limit, volume_capacity,
                             volume_class, volume_mode_mismatch, NO_PROVISIONER)
from kai.framework.predicate import NodePredicate

S = C.PodStatus

#: candidate PV-node pairs indexed per claim kind (above: plans scan the candidates instead)
_INDEX_LIMIT = 2_000_000

# kube-scheduler's reasons (v1.34)
NODE_CONFLICT = "node(s) didn't match PersistentVolume's node affinity"
BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
NOT_ENOUGH_SPACE = "node(s) did not have enough free storage"
ZONE_CONFLICT = "node(s) had no available volume zone"
MAX_VOLUMES = "node(s) exceed max volume count"
RWOP_CONFLICT = ("node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access mode "
                 "already in-use by another pod")
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"

#: in-tree provisioners kube-scheduler counts under their CSI driver (CSI migration is GA for these)
MIGRATED_PROVISIONERS = {"kubernetes.io/aws-ebs": "ebs.csi.aws.com", "kubernetes.io/gce-pd": "pd.csi.storage.gke.io",
                         "kubernetes.io/azure-disk": "disk.csi.azure.com",
                         "kubernetes.io/cinder": "cinder.csi.openstack.org"}


@dataclass(eq=False)
class Claim:
    key: str                        # namespace/name
    pvc: PersistentVolumeClaim
    size: object                    # Decimal: requested storage
    selected: str | None = None     # selected-node (annotation or assumed), at session open


@dataclass(eq=False)
class PodVolumes:
    """A pod's claims, resolved once per session (node-independent)."""
    reason: str = ""
    bound: list[tuple[Claim, PersistentVolume]] = field(default_factory=list)
    delay: list[Claim] = field(default_factory=list)       # unbound WaitForFirstConsumer, by size
    zone_pvs: list[PersistentVolume] = field(default_factory=list)
    rwop: list[str] = field(default_factory=list)          # claim keys (persistentVolumeClaim volumes)
    csi: dict[str, str] = field(default_factory=dict)      # unique volume name -> driver
    static_mask: np.ndarray | None = None                  # bound PVs' node affinity, AND-ed
    zone_mask: np.ndarray | None = None


@dataclass(eq=False)
class _Candidates:
    """The available PVs one kind of claim may take (FindMatchingVolume minus node and ledger)."""
    pvs: list[str]                  # by (capacity, name): the first fitting one is the smallest
    cnt: np.ndarray                 # int32[N]: candidate PVs not taken in the session, per node
    everywhere: int = 0             # of those, PVs without node affinity
    #: node -> positions in ``pvs`` of the PVs whose affinity admits it (None: too many to index)
    by_node: dict[int, list[int]] | None = None
    anywhere: list[int] = field(default_factory=list)      # positions of PVs without node affinity


@dataclass(eq=False)
class _Holding:
    """What a pod on a node holds in this session (undone on deallocate)."""
    node: int
    plans: tuple = ()
    rwop: tuple = ()
    csi: tuple = ()
    before: tuple = ()              # the task's volume_plan before this placement (restored on undo)


class VolumeSession:
    """Per-session volume state shared by the volume predicates (see the module docstring)."""

    def __init__(self, ssn) -> None:
        self.ssn = ssn
        self.store = ssn.state.storage
        self.table = ssn.state.nodes
        self._pods: dict[str, PodVolumes] = {}
        self._applies: dict[str, bool] = {}
        self._cands: dict[tuple, _Candidates] = {}
        self._pv_sigs: dict[str, list[tuple]] = {}
        self._provision: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._ready = False
        # the ledger: what this session's placements took
        self.taken: dict[str, list] = {}                 # pv -> [claim key, refcount]
        self.claim_pvs: dict[str, dict[str, int]] = {}   # claim key -> {pv: refcount}, the same
        self.selected: dict[str, list] = {}              # claim key -> [node name, refcount]
        self.held: dict[str, list[_Holding]] = {}        # pod uid -> holdings (a moved pod: both nodes)
        self.rwop_users: dict[str, dict[str, int]] = {}  # claim key -> {pod uid: holdings}
        self.attached: dict[str, dict[int, int]] = {}    # unique volume -> {node: refcount}
        self.driver_count: dict[str, np.ndarray] = {}    # driver -> int64[N] unique volumes per node
        self.limits: dict[str, np.ndarray] = {}
        self.driver_of: dict[str, str] = {}
        ssn.allocate_handlers.append(self._on_allocate)
        ssn.deallocate_handlers.append(self._on_deallocate)

    # ------------------------------------------------------------------ resolution
    def applies(self, task) -> bool:
        got = self._applies.get(task.uid)
        if got is None:
            vols = task.pod.spec.volumes
            got = bool(vols) and any(v.persistent_volume_claim is not None or v.ephemeral is not None for v in vols)
            self._applies[task.uid] = got
        return got

    def pod(self, task) -> PodVolumes:
        self._init()
        got = self._pods.get(task.uid)
        if got is None:
            got = self._pods[task.uid] = self._resolve(task)
        return got

    def _resolve(self, task) -> PodVolumes:
        """kube-scheduler's podHasPVCs + GetPodVolumeClaims (+ VolumeZone's and CSILimits' lookups)."""
        store, pod = self.store, task.pod
        out = PodVolumes()
        ns = task.namespace
        who = f"pod {task.key}: "
        claims: list[tuple[Claim, bool, bool]] = []
        seen: set[str] = set()
        for _vol, name, ephemeral in pod_claims(pod):
            key = f"{ns}/{name}"
            pvc = store.claims.get(key)
            if pvc is None:
                out.reason = who + (f"waiting for ephemeral volume controller to create the persistentvolumeclaim "
                                    f"\"{name}\"" if ephemeral else f"persistentvolumeclaim \"{name}\" not found")
                return out
            if pvc.status.phase == CLAIM_LOST:
                out.reason = who + (f"persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume "
                                    f"\"{pvc.spec.volume_name}\"")
                return out
            if pvc.metadata.deletion_timestamp is not None:
                out.reason = who + f"persistentvolumeclaim \"{name}\" is being deleted"
                return out
            if ephemeral and not is_controlled_by(pvc, pod):
                out.reason = who + f"PVC {key} was not created for pod {task.key} (pod is not owner)"
                return out
            if key in seen:
                continue
            seen.add(key)
            claims.append((Claim(key, pvc, requested_storage(pvc)), ephemeral, False))
        immediate = []
        for c, ephemeral, _ in claims:
            pvc = c.pvc
            if not ephemeral and READ_WRITE_ONCE_POD in pvc.spec.access_modes:
                out.rwop.append(c.key)
            driver_handle = self._csi_name(c.key, pvc)
            if driver_handle is not None:
                out.csi[driver_handle[1]] = driver_handle[0]
            if is_fully_bound(pvc):
                pv = store.volumes.get(pvc.spec.volume_name)
                if pv is None:
                    out.reason = who + (f"persistentvolumeclaim \"{pvc.metadata.name}\" is bound to persistentvolume "
                                        f"\"{pvc.spec.volume_name}\", which does not exist (node(s) unavailable due "
                                        f"to one or more pvc(s) bound to non-existent pv(s))")
                    return out
                out.bound.append((c, pv))
                continue
            sc = store.classes.get(claim_class(pvc))
            if sc is not None and sc.volume_binding_mode == WAIT_FOR_FIRST_CONSUMER and not pvc.spec.volume_name:
                c.selected = store.selected_node(pvc, c.key)
                out.delay.append(c)
            else:
                immediate.append(c.pvc.metadata.name)
        if immediate:
            out.reason = who + UNBOUND_IMMEDIATE + ": " + ", ".join(f'"{n}"' for n in immediate)
            return out
        # VolumeZone reads persistentVolumeClaim volumes whose claim names a PV (bound or not)
        for _vol, name, ephemeral in pod_claims(pod):
            if ephemeral:
                continue
            pvc = store.claims[f"{ns}/{name}"]
            if pvc.spec.volume_name:
                pv = store.volumes.get(pvc.spec.volume_name)
                if pv is None:
                    out.reason = who + f"persistentvolume \"{pvc.spec.volume_name}\" not found"
                    return out
                out.zone_pvs.append(pv)
        out.delay.sort(key=lambda c: c.size)         # stable, as kube-scheduler's byPVCSize sort
        table = self.table
        for _c, pv in out.bound:
            m = store.volume_nodes(pv, table)
            if m is not None:
                out.static_mask = m.copy() if out.static_mask is None else out.static_mask & m
        for pv in out.zone_pvs:
            m = store.zone_nodes(pv, table)
            if m is not None:
                out.zone_mask = m.copy() if out.zone_mask is None else out.zone_mask & m
        return out

    def _csi_name(self, key: str, pvc: PersistentVolumeClaim) -> tuple[str, str] | None:
        """(driver, unique volume name) NodeVolumeLimits counts for a claim, or None."""
        store = self.store
        if pvc.spec.volume_name:
            pv = store.volumes.get(pvc.spec.volume_name)
            if pv is not None:
                src = pv.spec.csi
                if src is None or not src.driver or not src.volume_handle:
                    return None
                return src.driver, f"{src.driver}/{src.volume_handle}"
        sc = store.classes.get(claim_class(pvc))
        if sc is None or not sc.provisioner:
            return None
        driver = MIGRATED_PROVISIONERS.get(sc.provisioner, sc.provisioner)
        return driver, f"{driver}/kai-unbound-{key}"

    # ------------------------------------------------------------------ session usage (lazy)
    def _init(self) -> None:
        """Users of RWOP claims and CSI volumes per node, from the pods the session sees now.
        Done on first use; handlers ignore events before it (the scan reflects them: before it no
        volume pod can have been placed, and evictions release nothing)."""
        if self._ready:
            return
        self._ready = True
        table = self.table
        self.limits = self.store.volume_limits(table)
        for p in self.ssn.state.pods.values():
            if not p.node_name or not self.applies(p):
                continue
            if not p.status & C.ACTIVE_USED:     # evicted ones too: they hold volumes until gone
                continue
            info = table.by_name.get(p.node_name)
            if info is None:
                continue
            self._hold(p, info.idx, ())
        for va in self.store.attachments.values():
            info = table.by_name.get(va.spec.node_name)
            name = va.spec.source.persistent_volume_name
            if info is None or not va.spec.attacher or not name:
                continue
            pv = self.store.volumes.get(name)
            if pv is None or pv.spec.csi is None:
                continue
            self._attach(f"{va.spec.attacher}/{pv.spec.csi.volume_handle}", va.spec.attacher, info.idx, 1)

    def _existing_claims(self, task) -> tuple[list[str], list[tuple[str, str]]]:
        """(RWOP claim keys, CSI (driver, unique name)) of a pod already on a node; missing claims
        are skipped (as kube-scheduler does for existing pods)."""
        store = self.store
        rwop, csi = [], []
        for _vol, name, ephemeral in pod_claims(task.pod):
            key = f"{task.namespace}/{name}"
            pvc = store.claims.get(key)
            if pvc is None:
                continue
            if not ephemeral and READ_WRITE_ONCE_POD in pvc.spec.access_modes:
                rwop.append(key)
            got = self._csi_name(key, pvc)
            if got is not None:
                csi.append(got)
        return rwop, csi

    def _hold(self, task, node: int, plans: tuple, before: tuple = ()) -> None:
        rwop, csi = self._existing_claims(task)
        for key in rwop:
            users = self.rwop_users.setdefault(key, {})
            users[task.uid] = users.get(task.uid, 0) + 1
        for driver, unique in csi:
            self._attach(unique, driver, node, 1)
        for p in plans:
            if p.volume:
                t = self.taken.get(p.volume)
                if t is None:
                    self.taken[p.volume] = [p.key, 1]
                    self._pv_taken(p.volume, -1)
                else:
                    t[1] += 1
                byc = self.claim_pvs.setdefault(p.key, {})
                byc[p.volume] = byc.get(p.volume, 0) + 1
            else:
                s = self.selected.get(p.key)
                if s is None:
                    self.selected[p.key] = [self.table.infos[node].name, 1]
                else:
                    s[1] += 1
        self.held.setdefault(task.uid, []).append(_Holding(node, plans, tuple(rwop), tuple(csi), before))

    def _release(self, task, h: _Holding) -> None:
        for key in h.rwop:
            users = self.rwop_users[key]
            users[task.uid] -= 1
            if users[task.uid] == 0:
                del users[task.uid]
        for driver, unique in h.csi:
            self._attach(unique, driver, h.node, -1)
        for p in h.plans:
            if p.volume:
                t = self.taken[p.volume]
                t[1] -= 1
                if t[1] == 0:
                    del self.taken[p.volume]
                    self._pv_taken(p.volume, +1)
                byc = self.claim_pvs[p.key]
                byc[p.volume] -= 1
                if byc[p.volume] == 0:
                    del byc[p.volume]
            else:
                sel = self.selected[p.key]
                sel[1] -= 1
                if sel[1] == 0:
                    del self.selected[p.key]

    def _attach(self, unique: str, driver: str, node: int, sign: int) -> None:
        where = self.attached.setdefault(unique, {})
        before = where.get(node, 0)
        after = before + sign
        if after > 0:
            where[node] = after
        else:
            where.pop(node, None)
        if (before > 0) != (after > 0):
            cnt = self.driver_count.get(driver)
            if cnt is None:
                cnt = self.driver_count[driver] = np.zeros(self.table.n, dtype=np.int64)
            cnt[node] += 1 if after > 0 else -1

    def _on_allocate(self, task) -> None:
        """A placement (virtual: allocated or pipelined in this session) takes its volumes; an
        eviction undone needs nothing, as evictions release nothing (below)."""
        if not self._ready or not self.applies(task):
            return
        if not (task.is_virtual and task.status & (S.ALLOCATED | S.PIPELINED)):
            return
        info = self.table.by_name.get(task.node_name)
        if info is None:
            return
        plans: tuple = ()
        pv = self.pod(task)
        if pv.delay and not pv.reason:
            got = self.plan(pv, info.idx)
            if got is None:     # the mask said this node fits: a bug, never bind blindly
                raise RuntimeError(f"volume plan for {task.key} on {task.node_name} not found")
            plans = tuple(got)
        before = task.volume_plan
        task.volume_plan = plans
        self._hold(task, info.idx, plans, before)

    def _on_deallocate(self, task) -> None:
        """Only an uncommitted placement undone (rolled back, or evicted in the statement that made
        it) gives its volumes back. A pod already on a node that is evicted keeps its ReadWriteOncePod
        claims and CSI volumes until it is gone (it still runs while it terminates; a placement
        relying on them would be bound at once, not pipelined), and a committed decision keeps its
        PVs (evicting a pod does not unbind its claims)."""
        if not self._ready or not task.is_virtual:
            return
        holdings = self.held.get(task.uid)
        if not holdings:
            return
        h = holdings.pop()
        if not holdings:
            del self.held[task.uid]
        self._release(task, h)
        task.volume_plan = h.before

    # ------------------------------------------------------------------ candidate PVs
    def _signature(self, c: Claim) -> tuple:
        s = c.pvc.spec
        sel = msgspec.json.encode(s.selector) if s.selector is not None else b""
        return (claim_class(c.pvc), c.size, tuple(sorted(s.access_modes)), sel, s.volume_mode or "Filesystem",
                s.volume_attributes_class_name or "")

    def _basic_fit(self, c: Claim, pv: PersistentVolume) -> bool:
        """FindMatchingVolume's checks before the claimRef test: size, volume mode, attributes
        class, not being deleted."""
        pvc = c.pvc
        return (volume_capacity(pv) >= c.size and not volume_mode_mismatch(pvc, pv)
                and (pvc.spec.volume_attributes_class_name or "") == (pv.spec.volume_attributes_class_name or "")
                and pv.metadata.deletion_timestamp is None)

    def candidates(self, c: Claim) -> _Candidates:
        sig = self._signature(c)
        got = self._cands.get(sig)
        if got is not None:
            return got
        store, table = self.store, self.table
        pvs = []
        for name in store.by_class.get(sig[0], ()):
            pv = store.volumes[name]
            if store.volume_claim(pv) is not None or pv.status.phase != VOLUME_AVAILABLE:
                continue
            if not self._basic_fit(c, pv) or not access_modes_ok(c.pvc, pv):
                continue
            if not label_selector_matches(c.pvc.spec.selector, pv.metadata.labels):
                continue
            pvs.append(pv)
        pvs.sort(key=lambda pv: (volume_capacity(pv), pv.metadata.name))
        cnt = np.zeros(table.n, dtype=np.int32)
        everywhere = 0
        by_node: dict[int, list[int]] | None = {}
        anywhere: list[int] = []
        nnz = 0
        for pos, pv in enumerate(pvs):
            name = pv.metadata.name
            self._pv_sigs.setdefault(name, []).append(sig)
            idx = store.volume_node_idx(pv, table)
            if idx is None:
                anywhere.append(pos)
            elif by_node is not None:
                nnz += idx.size
                if nnz > _INDEX_LIMIT:
                    by_node = None
                else:
                    for i in idx.tolist():
                        by_node.setdefault(i, []).append(pos)
            if name in self.taken:
                continue
            if idx is None:
                everywhere += 1
            else:
                cnt[idx] += 1                     # node indices are unique
        got = self._cands[sig] = _Candidates([pv.metadata.name for pv in pvs], cnt, everywhere, by_node, anywhere)
        return got

    def candidates_at(self, c: Claim, node: int) -> list[str]:
        """The claim's candidate PVs whose affinity admits ``node``, smallest first (taken ones
        included: the caller skips them)."""
        cand = self.candidates(c)
        if cand.by_node is None:
            store, table = self.store, self.table
            out = []
            for name in cand.pvs:
                nodes = store.volume_nodes(store.volumes[name], table)
                if nodes is None or nodes[node]:
                    out.append(name)
            return out
        here = cand.by_node.get(node, [])
        pos = sorted(here + cand.anywhere) if cand.anywhere else here
        return [cand.pvs[i] for i in pos]

    def _pv_taken(self, name: str, sign: int) -> None:
        """A PV left (sign -1) or re-entered (+1) the pool: update every candidate count holding it."""
        sigs = self._pv_sigs.get(name)
        if not sigs:
            return
        idx = self.store.volume_node_idx(self.store.volumes[name], self.table)
        for sig in sigs:
            cand = self._cands[sig]
            if idx is None:
                cand.everywhere += sign
            else:
                cand.cnt[idx] += sign

    def prebound(self, c: Claim) -> str | None:
        """A PV taken by this very claim (its claimRef, an assumed binding, or this session), if
        it passes FindMatchingVolume's checks: then it is the claim's only match."""
        store = self.store
        names = set(store.claimed_by.get(c.key, ())) | set(store.assumed_volumes(c.key))
        names |= self.claim_pvs.get(c.key, {}).keys()
        cls = claim_class(c.pvc)
        for name in sorted(names):
            pv = store.volumes.get(name)
            if pv is None or volume_class(pv) != cls:
                continue
            if not self._basic_fit(c, pv):
                continue
            ref = pv.spec.claim_ref
            if ref is not None and not is_bound_to_claim(pv, c.pvc.metadata.namespace or "default",
                                                         c.pvc.metadata.name, c.pvc.metadata.uid):
                continue
            return name
        return None

    def selected_node(self, c: Claim) -> str | None:
        if c.selected is not None:
            return c.selected
        s = self.selected.get(c.key)
        return s[0] if s is not None else None

    def provision(self, c: Claim) -> tuple[np.ndarray, np.ndarray]:
        """(bool[N] nodes where the claim can be provisioned, bool[N] of those ignoring capacity)."""
        cls = claim_class(c.pvc)
        key = (cls, c.size, "storage" in c.pvc.spec.resources.requests)
        got = self._provision.get(key)
        if got is not None:
            return got
        store, table = self.store, self.table
        sc = store.classes.get(cls)
        if sc is None or not sc.provisioner or sc.provisioner == NO_PROVISIONER:
            z = np.zeros(table.n, dtype=bool)
            got = (z, z)
        else:
            topo = store.topology_nodes(cls, table)
            cap = topo
            driver = store.drivers.get(sc.provisioner)
            if key[2] and driver is not None and driver.spec.storage_capacity:
                room = np.zeros(table.n, dtype=bool)
                for ckey, capobj in store.capacities.items():
                    lim = capacity_limit(capobj)
                    if capobj.storage_class_name == cls and lim is not None and lim >= c.size:
                        room |= store.selector_nodes((ckey, capobj.metadata.resource_version, id(capobj)),
                                                     capobj.node_topology, table)
                cap = topo & room
            got = (cap, topo)
        self._provision[key] = got
        return got

    # ------------------------------------------------------------------ decisions
    def _node_index(self, name: str) -> int:
        info = self.table.by_name.get(name)
        return -1 if info is None else info.idx

    def delay_mask(self, pv: PodVolumes, ignore_capacity: bool = False) -> np.ndarray:
        """bool[N]: nodes where every unbound WaitForFirstConsumer claim finds a PV or can be provisioned."""
        n = self.table.n
        claims = pv.delay
        if len(claims) == 1:
            c = claims[0]
            prov = self.provision(c)[1 if ignore_capacity else 0]
            sel = self.selected_node(c)
            if sel is not None:
                m = np.zeros(n, dtype=bool)
                i = self._node_index(sel)
                if i >= 0:
                    m[i] = prov[i]
                return m
            pb = self.prebound(c)
            if pb is not None:
                nodes = self.store.volume_nodes(self.store.volumes[pb], self.table)
                return np.ones(n, dtype=bool) if nodes is None else nodes | prov
            cand = self.candidates(c)
            if cand.everywhere > 0:
                return np.ones(n, dtype=bool)
            return (cand.cnt > 0) | prov
        # several claims: the per-node greedy, once per distinct column of facts
        m = np.ones(n, dtype=bool)
        for c in claims:
            m &= self.delay_mask(PodVolumes(delay=[c]), ignore_capacity)
        idx = np.flatnonzero(m)
        if idx.size == 0:
            return m
        pvs: list[str] = []
        for c in claims:
            if self.selected_node(c) is None:
                pb = self.prebound(c)
                pvs.extend([pb] if pb is not None else
                           [p for p in self.candidates(c).pvs if p not in self.taken])
        pvs = list(dict.fromkeys(pvs))
        rows = []
        for name in pvs:
            nodes = self.store.volume_nodes(self.store.volumes[name], self.table)
            rows.append(np.ones(idx.size, dtype=bool) if nodes is None else nodes[idx])
        for c in claims:
            rows.append(self.provision(c)[1 if ignore_capacity else 0][idx])
        facts = np.vstack(rows) if rows else np.zeros((0, idx.size), dtype=bool)
        cols, inverse = np.unique(facts.T, axis=0, return_inverse=True)
        row_of = {name: k for k, name in enumerate(pvs)}
        ok_col = np.zeros(len(cols), dtype=bool)
        for j, col in enumerate(cols):
            feasible = lambda name, col=col: bool(col[row_of[name]])   # noqa: E731
            prov = {c.key: bool(col[len(pvs) + k]) for k, c in enumerate(claims)}
            ok_col[j] = self._greedy(claims, feasible, prov.__getitem__, None) is not None
        out = np.zeros(n, dtype=bool)
        out[idx] = ok_col[np.asarray(inverse).reshape(-1)]
        return out

    def _greedy(self, claims: list[Claim], feasible, can_provision, node: int | None) -> list[ClaimPlan] | None:
        """FindPodVolumes on one node: claims by size, each takes its pre-bound PV or the smallest
        fitting candidate not taken, else is provisioned; None when a claim can do neither."""
        chosen: set[str] = set()
        plans: list[ClaimPlan] = []
        for c in claims:
            meta = c.pvc.metadata
            ns = meta.namespace or "default"
            sel = self.selected_node(c)
            if sel is not None:
                if node is not None and self._node_index(sel) != node:
                    return None
                if not can_provision(c.key):
                    return None
                plans.append(ClaimPlan(namespace=ns, name=meta.name, uid=meta.uid))
                continue
            pb = self.prebound(c)
            if pb is not None:
                pick = pb if feasible(pb) else None
            else:
                pool = self.candidates(c).pvs if node is None else self.candidates_at(c, node)
                pick = next((p for p in pool if p not in chosen and p not in self.taken and feasible(p)), None)
            if pick is not None:
                chosen.add(pick)
                plans.append(ClaimPlan(namespace=ns, name=meta.name, uid=meta.uid, volume=pick))
            elif can_provision(c.key):
                plans.append(ClaimPlan(namespace=ns, name=meta.name, uid=meta.uid))
            else:
                return None
        return plans

    def plan(self, pv: PodVolumes, node: int) -> list[ClaimPlan] | None:
        """The claims' decisions for ``node`` (None: the node does not fit)."""
        store, table = self.store, self.table

        def feasible(name: str) -> bool:
            nodes = store.volume_nodes(store.volumes[name], table)
            return nodes is None or bool(nodes[node])
        prov = {c.key: bool(self.provision(c)[0][node]) for c in pv.delay}
        return self._greedy(pv.delay, feasible, prov.__getitem__, node)

    def rwop_conflict(self, task, pv: PodVolumes) -> str | None:
        pods = self.ssn.state.pods
        for key in pv.rwop:
            others = sorted(pods[u].key if u in pods else u for u in self.rwop_users.get(key, {}) if u != task.uid)
            if others:
                return f"claim {key.split('/', 1)[1]} is used by pod {others[0]}"
        return None

    def limits_mask(self, pv: PodVolumes) -> np.ndarray | None:
        """bool[N]: nodes where the pod's new CSI volumes fit every driver's limit (None: no limit applies)."""
        if not pv.csi or not self.limits:
            return None
        out = None
        by_driver: dict[str, list[str]] = {}
        for unique, driver in pv.csi.items():
            if driver in self.limits:
                by_driver.setdefault(driver, []).append(unique)
        for driver, names in by_driver.items():
            lim = self.limits[driver]
            new = np.full(self.table.n, len(names), dtype=np.int64)
            for u in names:
                for node in self.attached.get(u, {}):
                    new[node] -= 1
            cur = self.driver_count.get(driver)
            used = new if cur is None else cur + new
            ok = (lim < 0) | (used <= lim) | (new == 0)
            out = ok if out is None else out & ok
        return out


# ---------------------------------------------------------------------------- predicates
class _VolumePredicate(NodePredicate):
    alike_stable = True         # applies: the pod's PVC and ephemeral volumes
    label_blind = True
    def __init__(self, vs: VolumeSession) -> None:
        self.vs = vs
        #: the session's test, bound directly (asked for every pending pod: one call, not two)
        self.applies = vs.applies


class VolumeBindingPredicate(_VolumePredicate):
    name = "VolumeBinding"
    per_task = True

    def pre_filter(self, task, job) -> str | None:
        return self.vs.pod(task).reason or None

    def mask(self, task, job):
        pv = self.vs.pod(task)
        if pv.reason:
            return np.zeros(self.vs.table.n, dtype=bool)
        m = pv.static_mask
        if pv.delay:
            d = self.vs.delay_mask(pv)
            m = d if m is None else m & d
        return m

    def explain(self, task, job, among):
        vs = self.vs
        pv = vs.pod(task)
        if pv.reason:
            return [(np.ones(vs.table.n, dtype=bool), pv.reason)]
        out = []
        if pv.static_mask is not None:
            out.append((~pv.static_mask, NODE_CONFLICT))
        if pv.delay:
            loose = vs.delay_mask(pv, ignore_capacity=True)
            out.append((~loose, BIND_CONFLICT))
            out.append((~vs.delay_mask(pv), NOT_ENOUGH_SPACE))
        return out


class VolumeZonePredicate(_VolumePredicate):
    name = "VolumeZone"

    def mask(self, task, job):
        pv = self.vs.pod(task)
        return None if pv.reason else pv.zone_mask

    def explain(self, task, job, among):
        m = self.mask(task, job)
        return [] if m is None else [(~m, ZONE_CONFLICT)]


class VolumeRestrictionsPredicate(_VolumePredicate):
    name = "VolumeRestrictions"
    per_task = True

    def pre_filter(self, task, job) -> str | None:
        pv = self.vs.pod(task)
        if pv.reason or not pv.rwop:
            return None
        who = self.vs.rwop_conflict(task, pv)
        return f"pod {task.key}: {RWOP_CONFLICT} ({who})" if who else None

    def mask(self, task, job):
        return None


class NodeVolumeLimitsPredicate(_VolumePredicate):
    name = "NodeVolumeLimits"
    per_task = True

    def mask(self, task, job):
        pv = self.vs.pod(task)
        return None if pv.reason else self.vs.limits_mask(pv)

    def explain(self, task, job, among):
        m = self.mask(task, job)
        return [] if m is None else [(~m, MAX_VOLUMES)]


def register(ssn) -> VolumeSession:
    """Open the session's volume state and add the four predicates (called by ``predicates``)."""
    vs = VolumeSession(ssn)
    ssn.node_predicates.extend([VolumeBindingPredicate(vs), VolumeRestrictionsPredicate(vs),
                                VolumeZonePredicate(vs), NodeVolumeLimitsPredicate(vs)])
    return vs
