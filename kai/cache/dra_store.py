"""DraStore: the cluster's DRA objects and the device inventory built from them.

Holds ResourceSlices, DeviceClasses, ResourceClaims and ResourceClaimTemplates (keyed like the
informers: ``name`` or ``namespace/name``), fed one event at a time by the controller
(``kai.controller.main``) or in bulk from manifests (``kai simulate``). It builds the
:class:`kai.dra.inventory.Inventory` lazily when slices or nodes changed (never per cycle)
and keeps a base :class:`kai.dra.allocator.DraAllocator` with the API's allocations, updated
per claim event; a session takes :meth:`allocator` / :meth:`session_allocator` (a fork: its
own device use, shared compiled masks) and resolves pods with :meth:`pod_claims`.

The ClusterState holds the store (``ClusterState.dra``) and tells it two things:

- :meth:`assume` -- a pod was committed for binding with the claims a session allocated; the
  base allocator keeps those devices taken until the API shows the claim's allocation (the
  binder writes it), the binding fails (:meth:`unassume`) or the pod is deleted, so the next
  cycle never hands them out again;
- :meth:`refresh` -- a session opens: every pod with ``spec.resourceClaims`` gets
  ``PodInfo.dra_gpus``, the GPUs its claims count for in queue quota (:mod:`kai.dra.quota`),
  before any plugin reads quota figures.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

import msgspec
import numpy as np

from kai.api.dra import (DRA_KINDS, NAMESPACED, AllocationResult, DeviceClass, ResourceClaim,
                         ResourceClaimConsumerReference, ResourceClaimTemplate, ResourceSlice)
from kai.api.k8s import ObjectMeta, Pod
from kai.dra.allocator import (ClaimAllocation, DraAllocation, DraAllocator, PodClaim, allocation_status,
                               resolve_pod_claims)
from kai.dra.inventory import Inventory, build_inventory
from kai.dra.quota import GpuClasses, allocated_gpus, gpu_classes, requested_gpus

DELETED = "DELETED"


@dataclass
class _Assumed:
    """A claim allocation kai committed that the API does not show yet."""
    claim: ResourceClaim | None               # the claim as kai saw it (None: not known)
    held: ClaimAllocation                     # what the base allocator holds for it
    pod_name: str

    def shown(self, key: str) -> ResourceClaim:
        """The claim as it will read once the binder wrote it (for rebuilt allocators)."""
        claim = self.claim
        if claim is None:
            ns, name = key.split("/", 1)
            claim = ResourceClaim(metadata=ObjectMeta(name=name, namespace=ns))
        reserved = list(claim.status.reserved_for)
        for uid in self.held.reserved_for:
            if not any(r.uid == uid for r in reserved):
                reserved.append(ResourceClaimConsumerReference(resource="pods", name=self.pod_name, uid=uid))
        return msgspec.structs.replace(claim, status=msgspec.structs.replace(
            claim.status, allocation=msgspec.convert(allocation_status(self.held), AllocationResult),
            reserved_for=reserved))


def _key(kind: str, obj: Any) -> str:
    m = obj.metadata
    return f"{m.namespace or 'default'}/{m.name}" if kind in NAMESPACED else m.name


class DraStore:
    """The four DRA kinds plus a lazily rebuilt inventory and base allocator."""

    def __init__(self) -> None:
        self.slices: dict[str, ResourceSlice] = {}
        self.classes: dict[str, DeviceClass] = {}
        self.claims: dict[str, ResourceClaim] = {}
        self.templates: dict[str, ResourceClaimTemplate] = {}
        self._by_kind = {"ResourceSlice": self.slices, "DeviceClass": self.classes,
                         "ResourceClaim": self.claims, "ResourceClaimTemplate": self.templates}
        self.slices_version = 0
        self.classes_version = 0
        self._inv: Inventory | None = None
        self._inv_key: tuple | None = None
        self._base: DraAllocator | None = None
        self._selector_slices: tuple[int, bool] = (-1, False)
        #: claim key -> what kai committed for it (allocation, reservedFor), until the API shows it
        self.assumed: dict[str, _Assumed] = {}
        #: the assumed claims whose allocation kai made (the binder may have to write it)
        self.kai_allocated: set[str] = set()
        self._assumed_by_pod: dict[str, list[str]] = {}
        #: which device classes count as GPUs in queue quota (the dynamicresources plugin's setting)
        self.gpu = GpuClasses()
        #: template claims not created yet are made up by kai (``kai simulate``); live, the pod waits
        #: for the controller-manager to create them
        self.generate = False
        self._quota_memo: dict[str, tuple[tuple, float]] = {}

    @staticmethod
    def handles(kind: str) -> bool:
        return kind in DRA_KINDS

    def apply(self, kind: str, etype: str, obj: Any) -> None:
        """One informer event (ADDED / MODIFIED / DELETED)."""
        table = self._by_kind[kind]
        key = _key(kind, obj)
        if etype == DELETED:
            table.pop(key, None)
        else:
            table[key] = obj
        if kind == "ResourceSlice":
            self.slices_version += 1
        elif kind == "DeviceClass":
            self.classes_version += 1
            self._base = None
        elif kind == "ResourceClaim":
            if etype == DELETED or obj.status.allocation is not None:
                self.assumed.pop(key, None)        # gone, or the API holds an allocation now
                self.kai_allocated.discard(key)
            base = self._base
            if base is not None:
                a = self.assumed.get(key)
                if a is not None:                  # e.g. the binder's finalizer update: keep kai's
                    if key not in base.allocated:
                        base.adopt(a.shown(key))
                elif etype == DELETED or obj.status.allocation is None:
                    base.forget(key)
                else:
                    base.adopt(obj)

    def load(self, objects: dict[str, Iterable[Any]]) -> None:
        """Bulk load (the informers' first list, or manifests): ``{kind: objects}``."""
        for kind, objs in objects.items():
            if kind in self._by_kind:
                for o in objs:
                    self.apply(kind, "ADDED", o)

    def __len__(self) -> int:
        return sum(len(t) for t in self._by_kind.values())

    def inventory(self, node_names: list[str], node_labels: list[dict[str, str]] | None = None,
                  node_version: Any = None) -> Inventory:
        """The inventory for these nodes (column order = the node table's); rebuilt only when the
        slices or ``node_version`` (anything that changes with the node set or labels) change."""
        key = (self.slices_version, node_version if node_version is not None else tuple(node_names))
        if self._inv is None or key != self._inv_key:
            self._inv = build_inventory(self.slices.values(), node_names, node_labels, version=self.slices_version)
            self._inv_key = key
            self._base = None
        return self._inv

    def allocator(self, node_names: list[str], node_labels: list[dict[str, str]] | None = None,
                  node_version: Any = None) -> DraAllocator:
        """A session's allocator: the API's allocations, its own device use and journal."""
        return self._base_for(node_names, node_labels, node_version).fork()

    def _base_for(self, node_names, node_labels, node_version) -> DraAllocator:
        inv = self.inventory(node_names, node_labels, node_version)
        if self._base is None or self._base.inv is not inv:
            shown = {**self.claims, **{k: a.shown(k) for k, a in self.assumed.items()}}
            self._base = DraAllocator(inv, dict(self.classes), shown.values())
        return self._base

    # ------------------------------------------------------------------ node table
    def _node_args(self, nodes) -> tuple[list[str], list[dict[str, str]] | None, Any]:
        """Names (a free column is ""), labels when a slice selects nodes by label, and a version
        key, in the column order of a :class:`kai.cache.node_table.NodeTable`."""
        names = [info.name if info is not None else "" for info in nodes.infos]
        if self._selector_slices[0] != self.slices_version:
            self._selector_slices = (self.slices_version, any(
                s.spec.node_selector is not None for s in self.slices.values()))
        if not self._selector_slices[1]:
            return names, None, tuple(names)
        labels = [dict(info.labels) if info is not None else {} for info in nodes.infos]
        return names, labels, (tuple(names), nodes.generation)

    def session_allocator(self, nodes) -> DraAllocator:
        """A session's allocator over the node table's columns."""
        return self.allocator(*self._node_args(nodes))

    def base_allocator(self, nodes) -> DraAllocator:
        """The shared base (read it, never change it)."""
        return self._base_for(*self._node_args(nodes))

    # ------------------------------------------------------------------ commits
    def assume(self, pod_uid: str, pod_name: str, got: DraAllocation) -> None:
        """A pod was committed for binding with ``got``: keep the claims kai allocated for it
        allocated, and the pod in the reservedFor of every claim it uses, until the API shows
        the allocation."""
        base = self._base
        fast = base is not None and base.inv is got.inv
        keys = []
        for c in got.claims:
            if c.new:
                held = dataclasses.replace(c, reserved_for=[pod_uid] if pod_uid else [], new=False)
                self.assumed[c.key] = _Assumed(self.claims.get(c.key) or c.claim, held, pod_name)
                self.kai_allocated.add(c.key)
                keys.append(c.key)
                if fast:
                    base.hold(held)
                elif base is not None:
                    base.adopt(self.assumed[c.key].shown(c.key))
            elif base is not None:
                held = base.allocated.get(c.key)
                if held is not None and pod_uid and pod_uid not in held.reserved_for:
                    held.reserved_for = held.reserved_for + [pod_uid]
        if keys:
            self._assumed_by_pod[pod_uid] = keys

    def unassume(self, pod_uid: str) -> None:
        """The pod's binding failed or the pod is gone: drop what :meth:`assume` kept (the API's
        own view of those claims comes back)."""
        for key in self._assumed_by_pod.pop(pod_uid, ()):
            self.kai_allocated.discard(key)
            if self.assumed.pop(key, None) is None or self._base is None:
                continue
            claim = self.claims.get(key)
            if claim is None or claim.status.allocation is None:
                self._base.forget(key)
            else:
                self._base.adopt(claim)

    # ------------------------------------------------------------------ per session
    def refresh(self, state, config=None) -> None:
        """A session opens over ``state`` (its ClusterState): take the GPU class rule from the
        config's ``dynamicresources`` arguments and set ``PodInfo.dra_gpus`` for every pod with
        resourceClaims. A pod's figure is kept while the pod, the claims (or templates) it
        names and their allocations are the very same objects."""
        args = config.plugin_args("dynamicresources") if config is not None else None
        gpu = gpu_classes(args)
        if gpu != self.gpu:
            self.gpu = gpu
            self._quota_memo.clear()
        pods, nodes = state.pods, state.nodes
        memo = self._quota_memo
        if len(memo) > 2 * len(state.claim_pods) + 64:
            for uid in [u for u in memo if u not in state.claim_pods]:
                del memo[uid]
        base = None
        for uid in state.claim_pods:
            p = pods.get(uid)
            if p is None:
                continue
            if base is None:
                base = self.base_allocator(nodes)
            deps = self._quota_deps(p.pod, base)
            m = memo.get(uid)
            before = p.dra_gpus
            if m is not None and len(m[0]) == len(deps) and all(a is b for a, b in zip(m[0], deps)):
                p.dra_gpus = m[1]
            else:
                p.dra_gpus = self._pod_gpus(p.pod, base, gpu)
                memo[uid] = (deps, p.dra_gpus)
            if p.dra_gpus != before and p.job_key:
                # the job's queue figures kept across cycles (proportion's JobFigures) count it
                state.job_changed(p.job_key)

    def _quota_deps(self, pod: Pod, base: DraAllocator) -> tuple:
        """The objects a pod's quota GPUs follow from: the pod, and per entry its claim (or
        template) and that claim's allocation."""
        ns = pod.metadata.namespace or "default"
        statuses = pod.status.resource_claim_statuses
        out: list = [pod]
        for e in pod.spec.resource_claims:
            name = e.resource_claim_name
            if not name:
                name = next((s.resource_claim_name for s in statuses if s.name == e.name), None)
            if name:
                key = f"{ns}/{name}"
                out.append(self.claims.get(key))
                out.append(base.allocated.get(key))
            out.append(self.templates.get(f"{ns}/{e.resource_claim_template_name}")
                       if e.resource_claim_template_name else None)
        return tuple(out)

    def _pod_gpus(self, pod: Pod, base: DraAllocator, gpu: GpuClasses) -> float:
        n = 0
        seen: set[str] = set()
        for pc in self.pod_claims(pod, generate=True):
            claim = pc.claim
            if claim is None or pc.key in seen:
                continue
            seen.add(pc.key)
            got = base.allocated.get(pc.key)
            if got is not None:
                n += allocated_gpus(claim, got.results, gpu)
            else:
                n += requested_gpus(claim, gpu, lambda e: base.max_per_node(
                    e.device_class_name, e.selectors, e.tolerations))
        return float(n)

    def gpu_capacity(self, nodes, ready: np.ndarray) -> float:
        """Usable devices of GPU device classes that ``ready`` (bool[N]) nodes reach, each once."""
        gpu = self.gpu
        names = [c for c in self.classes if c in gpu]
        if not names or not self.slices:
            return 0.0
        base = self.base_allocator(nodes)
        inv = base.inv
        m = np.zeros(inv.n_devices, dtype=bool)
        for c in names:
            m |= base._alt_match(c, [], [])[0]
        ready = np.asarray(ready, dtype=bool)[: inv.n_nodes]
        k = inv.net_start
        n = int((m[:k] & ready[inv.dev_node[:k]]).sum())
        if k < inv.n_devices:
            reach = inv.scope_nodes[:, : len(ready)].astype(bool) & ready
            n += int((m[k:] & reach.any(axis=1)[inv.dev_scope[k:]]).sum())
        return float(n)

    def pod_claims(self, pod: Pod, generate: bool = False) -> list[PodClaim]:
        return resolve_pod_claims(pod, self.claims, self.templates, generate=generate)
