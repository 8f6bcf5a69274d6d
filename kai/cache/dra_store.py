"""DraStore: the cluster's DRA objects and the device inventory built from them.

Holds ResourceSlices, DeviceClasses, ResourceClaims and ResourceClaimTemplates (keyed like the
informers: ``name`` or ``namespace/name``), fed one event at a time by the controller
(``kai.controller.main``) or in bulk from manifests (``kai simulate``). It builds the
:class:`kai.dra.inventory.Inventory` lazily when slices or nodes changed (never per cycle)
and keeps a base :class:`kai.dra.allocator.DraAllocator` with the API's allocations, updated
per claim event; a session takes :meth:`allocator` (a fork: its own device use, shared
compiled masks) and resolves pods with :meth:`pod_claims`.
"""
from __future__ import annotations

from typing import Any, Iterable

from kai.api.dra import DRA_KINDS, NAMESPACED, DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice
from kai.api.k8s import Pod
from kai.dra.allocator import DraAllocator, PodClaim, resolve_pod_claims
from kai.dra.inventory import Inventory, build_inventory

DELETED = "DELETED"


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
        elif kind == "ResourceClaim" and self._base is not None:
            if etype == DELETED or obj.status.allocation is None:
                self._base.forget(key)
            else:
                self._base.adopt(obj)

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
        inv = self.inventory(node_names, node_labels, node_version)
        if self._base is None or self._base.inv is not inv:
            self._base = DraAllocator(inv, dict(self.classes), self.claims.values())
        return self._base.fork()

    def pod_claims(self, pod: Pod, generate: bool = False) -> list[PodClaim]:
        return resolve_pod_claims(pod, self.claims, self.templates, generate=generate)
