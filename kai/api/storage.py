"""Storage objects as msgspec Structs, and the pure rules kube-scheduler's volume plugins apply.

PersistentVolume, PersistentVolumeClaim, StorageClass, CSINode, CSIDriver, CSIStorageCapacity
and VolumeAttachment (the objects kube-scheduler's VolumeBinding, VolumeRestrictions,
NodeVolumeLimits and VolumeZone read), plus ConfigMap as metadata only (KAI's ConfigMap
predicate needs names, never data). They decode from API JSON or YAML-loaded dicts like the
models in :mod:`kai.api.k8s`.

The functions below are the node-independent parts of those plugins' rules, written after
``k8s.io/component-helpers/storage/volume`` (v0.34): a claim's class, "fully bound", a volume
pre-bound to a claim, volume mode and access modes, the sizes FindMatchingVolume compares, PV
zone labels (VolumeZone), the PVC name of a generic ephemeral volume. No I/O, no node masks:
the store (:mod:`kai.cache.storage_store`) and the plugin (:mod:`kai.plugins.volumebinding`)
build on them. :func:`validate` checks what the API server would refuse (``kai simulate``).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from kai.api.k8s import LabelSelector, NodeSelector, ObjectMeta, Pod, Volume
from kai.api.resources import QuantityError, parse_quantity

# --- names kube-scheduler and the PV controller use ---------------------------------------
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"

READ_WRITE_ONCE = "ReadWriteOnce"
READ_ONLY_MANY = "ReadOnlyMany"
READ_WRITE_MANY = "ReadWriteMany"
READ_WRITE_ONCE_POD = "ReadWriteOncePod"
ACCESS_MODES = (READ_WRITE_ONCE, READ_ONLY_MANY, READ_WRITE_MANY, READ_WRITE_ONCE_POD)
VOLUME_MODES = ("Filesystem", "Block")
IMMEDIATE = "Immediate"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
BINDING_MODES = (IMMEDIATE, WAIT_FOR_FIRST_CONSUMER)

CLAIM_LOST = "Lost"
VOLUME_AVAILABLE = "Available"
VOLUME_BOUND = "Bound"

#: VolumeZone's PV labels (beta first, as kube-scheduler lists them) and their GA names
ZONE_LABELS = ("failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
               "topology.kubernetes.io/zone", "topology.kubernetes.io/region")
GA_LABEL = {"failure-domain.beta.kubernetes.io/zone": "topology.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region": "topology.kubernetes.io/region"}
MULTI_ZONE_DELIMITER = "__"


class _K(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    pass


# --- PersistentVolume ---------------------------------------------------------------------

class ObjectReference(_K):
    api_version: str = ""
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    resource_version: str = ""


class VolumeNodeAffinity(_K):
    required: NodeSelector | None = None


class CSIPersistentVolumeSource(_K):
    driver: str = ""
    volume_handle: str = ""


class PersistentVolumeSpec(_K):
    capacity: dict[str, str | int | float] = {}
    access_modes: list[str] = []
    claim_ref: ObjectReference | None = None
    storage_class_name: str = ""
    volume_mode: str | None = None
    node_affinity: VolumeNodeAffinity | None = None
    csi: CSIPersistentVolumeSource | None = None
    volume_attributes_class_name: str | None = None
    persistent_volume_reclaim_policy: str = ""


class PersistentVolumeStatus(_K):
    phase: str = ""


class PersistentVolume(_K):
    api_version: str = "v1"
    kind: str = "PersistentVolume"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PersistentVolumeSpec = msgspec.field(default_factory=PersistentVolumeSpec)
    status: PersistentVolumeStatus = msgspec.field(default_factory=PersistentVolumeStatus)


# --- PersistentVolumeClaim ----------------------------------------------------------------

class VolumeResourceRequirements(_K):
    requests: dict[str, str | int | float] = {}
    limits: dict[str, str | int | float] = {}


class PersistentVolumeClaimSpec(_K):
    access_modes: list[str] = []
    selector: LabelSelector | None = None
    resources: VolumeResourceRequirements = msgspec.field(default_factory=VolumeResourceRequirements)
    volume_name: str = ""
    storage_class_name: str | None = None
    volume_mode: str | None = None
    volume_attributes_class_name: str | None = None


class PersistentVolumeClaimStatus(_K):
    phase: str = ""


class PersistentVolumeClaim(_K):
    api_version: str = "v1"
    kind: str = "PersistentVolumeClaim"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PersistentVolumeClaimSpec = msgspec.field(default_factory=PersistentVolumeClaimSpec)
    status: PersistentVolumeClaimStatus = msgspec.field(default_factory=PersistentVolumeClaimStatus)


# --- StorageClass, CSI objects ------------------------------------------------------------

class TopologySelectorLabelRequirement(_K):
    key: str = ""
    values: list[str] = []


class TopologySelectorTerm(_K):
    match_label_expressions: list[TopologySelectorLabelRequirement] = []


class StorageClass(_K):
    api_version: str = "storage.k8s.io/v1"
    kind: str = "StorageClass"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    provisioner: str = ""
    volume_binding_mode: str | None = None
    allowed_topologies: list[TopologySelectorTerm] = []
    reclaim_policy: str | None = None


class VolumeNodeResources(_K):
    count: int | None = None


class CSINodeDriver(_K):
    name: str = ""
    node_id: str = msgspec.field(default="", name="nodeID")
    topology_keys: list[str] | None = None      # the API sends null (no omitempty)
    allocatable: VolumeNodeResources | None = None


class CSINodeSpec(_K):
    drivers: list[CSINodeDriver] | None = None  # the API sends null (no omitempty)


class CSINode(_K):
    api_version: str = "storage.k8s.io/v1"
    kind: str = "CSINode"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: CSINodeSpec = msgspec.field(default_factory=CSINodeSpec)


class CSIDriverSpec(_K):
    storage_capacity: bool | None = None


class CSIDriver(_K):
    api_version: str = "storage.k8s.io/v1"
    kind: str = "CSIDriver"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: CSIDriverSpec = msgspec.field(default_factory=CSIDriverSpec)


class CSIStorageCapacity(_K):
    api_version: str = "storage.k8s.io/v1"
    kind: str = "CSIStorageCapacity"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    storage_class_name: str = ""
    node_topology: LabelSelector | None = None
    capacity: str | int | float | None = None
    maximum_volume_size: str | int | float | None = None


class VolumeAttachmentSource(_K):
    persistent_volume_name: str | None = None


class VolumeAttachmentSpec(_K):
    attacher: str = ""
    node_name: str = ""
    source: VolumeAttachmentSource = msgspec.field(default_factory=VolumeAttachmentSource)


class VolumeAttachment(_K):
    api_version: str = "storage.k8s.io/v1"
    kind: str = "VolumeAttachment"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: VolumeAttachmentSpec = msgspec.field(default_factory=VolumeAttachmentSpec)


class ConfigMapMeta(_K):
    """The identity of a ConfigMap and nothing else: its labels and annotations (``kubectl apply``
    keeps a copy of the data in one) are dropped while decoding."""
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    deletion_timestamp: str | None = None


class ConfigMap(_K):
    """A ConfigMap's identity only (the informer asks for PartialObjectMetadata; data is never kept)."""
    api_version: str = "v1"
    kind: str = "ConfigMap"
    metadata: ConfigMapMeta = msgspec.field(default_factory=ConfigMapMeta)


STORAGE_KINDS: dict[str, type] = {
    "PersistentVolume": PersistentVolume,
    "PersistentVolumeClaim": PersistentVolumeClaim,
    "StorageClass": StorageClass,
    "CSINode": CSINode,
    "CSIDriver": CSIDriver,
    "CSIStorageCapacity": CSIStorageCapacity,
    "VolumeAttachment": VolumeAttachment,
    "ConfigMap": ConfigMap,
}
#: kinds keyed ``namespace/name``; the others are cluster-scoped
NAMESPACED = frozenset({"PersistentVolumeClaim", "CSIStorageCapacity", "ConfigMap"})


class ClaimPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What a placement decided for one unbound claim: bind it to ``volume`` (static binding:
    the binder sets the PV's claimRef), or, ``volume`` empty, provision it on the pod's node
    (the binder sets ``volume.kubernetes.io/selected-node``)."""
    namespace: str
    name: str
    uid: str = ""
    volume: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# --- the rules (component-helpers/storage/volume) -----------------------------------------

def claim_class(pvc: PersistentVolumeClaim) -> str:
    """GetPersistentVolumeClaimClass: the beta annotation wins over spec.storageClassName."""
    ann = pvc.metadata.annotations
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS]
    return pvc.spec.storage_class_name or ""


def volume_class(pv: PersistentVolume) -> str:
    ann = pv.metadata.annotations
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS]
    return pv.spec.storage_class_name


def is_fully_bound(pvc: PersistentVolumeClaim) -> bool:
    """VolumeBinding's isPVCFullyBound: a volume name and the PV controller's bind-completed mark.

    A claim whose ``status.phase`` is Bound also counts: the PV controller writes the annotation
    before the phase, so on a live cluster the two agree, and manifests written by hand for
    ``kai simulate`` usually state only the phase."""
    if not pvc.spec.volume_name:
        return False
    return ANN_BIND_COMPLETED in pvc.metadata.annotations or pvc.status.phase == VOLUME_BOUND


def is_bound_to_claim(pv: PersistentVolume, namespace: str, name: str, uid: str) -> bool:
    """IsVolumeBoundToClaim: the PV's claimRef names the claim (and its UID, when it has one)."""
    ref = pv.spec.claim_ref
    if ref is None or ref.name != name or (ref.namespace or "default") != namespace:
        return False
    return not ref.uid or ref.uid == uid


def volume_mode_mismatch(pvc: PersistentVolumeClaim, pv: PersistentVolume) -> bool:
    return (pvc.spec.volume_mode or "Filesystem") != (pv.spec.volume_mode or "Filesystem")


def access_modes_ok(pvc: PersistentVolumeClaim, pv: PersistentVolume) -> bool:
    """CheckAccessModes: the PV offers every mode the claim asks for."""
    offered = set(pv.spec.access_modes)
    return all(m in offered for m in pvc.spec.access_modes)


def _size(q) -> Decimal:
    if q is None:
        return Decimal(0)
    try:
        return parse_quantity(q)
    except QuantityError:
        return Decimal(-1)      # unparsable: never large enough, never a fit


def requested_storage(pvc: PersistentVolumeClaim) -> Decimal:
    return _size(pvc.spec.resources.requests.get("storage"))


def volume_capacity(pv: PersistentVolume) -> Decimal:
    return _size(pv.spec.capacity.get("storage"))


def capacity_limit(cap: CSIStorageCapacity) -> Decimal | None:
    """The largest volume a CSIStorageCapacity admits (maximumVolumeSize, else capacity)."""
    q = cap.maximum_volume_size if cap.maximum_volume_size is not None else cap.capacity
    return None if q is None else _size(q)


def zone_topologies(pv: PersistentVolume) -> list[tuple[str, frozenset[str]]]:
    """VolumeZone: (label key, allowed values) per zone/region label on the PV; values are
    ``__``-separated; a malformed value (an empty part) is ignored, as kube-scheduler does."""
    out = []
    labels = pv.metadata.labels
    for key in ZONE_LABELS:
        value = labels.get(key)
        if value is None:
            continue
        parts = [p.strip() for p in value.split(MULTI_ZONE_DELIMITER)]
        if any(not p for p in parts):
            continue
        out.append((key, frozenset(parts)))
    return out


def label_selector_matches(sel: LabelSelector | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelectorAsSelector(sel).Matches(labels); None matches everything here (a
    claim without a selector accepts any volume). An invalid requirement matches nothing."""
    if sel is None:
        return True
    for k, v in sel.match_labels.items():
        if labels.get(k) != v:
            return False
    for e in sel.match_expressions:
        have = e.key in labels
        if e.operator == "In":
            if not e.values or not have or labels[e.key] not in e.values:
                return False
        elif e.operator == "NotIn":
            if not e.values or (have and labels[e.key] in e.values):
                return False
        elif e.operator == "Exists":
            if e.values or not have:
                return False
        elif e.operator == "DoesNotExist":
            if e.values or have:
                return False
        else:
            return False
    return True


def ephemeral_claim_name(pod: Pod, volume: Volume) -> str:
    """The PVC the ephemeral volume controller creates for a generic ephemeral volume."""
    return f"{pod.metadata.name}-{volume.name}"


def is_controlled_by(pvc: PersistentVolumeClaim, pod: Pod) -> bool:
    """ephemeral.VolumeIsForPod: same namespace and the pod is the claim's controller."""
    if (pvc.metadata.namespace or "default") != (pod.metadata.namespace or "default"):
        return False
    return any(o.controller and o.uid == pod.metadata.uid for o in pvc.metadata.owner_references)


def pod_claims(pod: Pod) -> list[tuple[str, str, bool]]:
    """``(volume name, claim name, ephemeral)`` for every PVC-backed volume of the pod."""
    out = []
    for v in pod.spec.volumes:
        if v.persistent_volume_claim is not None:
            out.append((v.name, v.persistent_volume_claim.claim_name, False))
        elif v.ephemeral is not None:
            out.append((v.name, ephemeral_claim_name(pod, v), True))
    return out


# --- validation (``kai simulate`` reads manifests no API server has seen) -----------------

def _quantity_errors(d: dict, where: str) -> list[str]:
    errs = []
    for name, q in d.items():
        try:
            if parse_quantity(q) < 0:
                errs.append(f"{where}.{name}: negative quantity {q!r}")
        except QuantityError as exc:
            errs.append(f"{where}.{name}: {exc}")
    return errs


def _modes(modes: list[str], where: str) -> list[str]:
    return [f"{where}[{i}]: unknown access mode {m!r} (one of {', '.join(ACCESS_MODES)})"
            for i, m in enumerate(modes) if m not in ACCESS_MODES]


def validate(obj: Any) -> list[str]:
    """Problems the API server would refuse, as ``field.path: message`` strings (empty: valid)."""
    errs: list[str] = []
    if isinstance(obj, PersistentVolume):
        s = obj.spec
        if "storage" not in s.capacity:
            errs.append("spec.capacity.storage: required")
        errs += _quantity_errors(s.capacity, "spec.capacity")
        if not s.access_modes:
            errs.append("spec.accessModes: at least one access mode is required")
        errs += _modes(s.access_modes, "spec.accessModes")
        if s.volume_mode is not None and s.volume_mode not in VOLUME_MODES:
            errs.append(f"spec.volumeMode: {s.volume_mode!r} is not one of {', '.join(VOLUME_MODES)}")
        if s.node_affinity is not None and s.node_affinity.required is None:
            errs.append("spec.nodeAffinity.required: must specify required node constraints")
        if READ_WRITE_ONCE_POD in s.access_modes and len(s.access_modes) > 1:
            errs.append("spec.accessModes: ReadWriteOncePod may not be used with other access modes")
    elif isinstance(obj, PersistentVolumeClaim):
        s = obj.spec
        if not s.access_modes:
            errs.append("spec.accessModes: at least one access mode is required")
        errs += _modes(s.access_modes, "spec.accessModes")
        if READ_WRITE_ONCE_POD in s.access_modes and len(s.access_modes) > 1:
            errs.append("spec.accessModes: ReadWriteOncePod may not be used with other access modes")
        if "storage" not in s.resources.requests and not s.volume_name:
            errs.append("spec.resources.requests.storage: required")
        errs += _quantity_errors(s.resources.requests, "spec.resources.requests")
        if s.volume_mode is not None and s.volume_mode not in VOLUME_MODES:
            errs.append(f"spec.volumeMode: {s.volume_mode!r} is not one of {', '.join(VOLUME_MODES)}")
    elif isinstance(obj, StorageClass):
        if not obj.provisioner:
            errs.append("provisioner: required")
        if obj.volume_binding_mode is not None and obj.volume_binding_mode not in BINDING_MODES:
            errs.append(f"volumeBindingMode: {obj.volume_binding_mode!r} is not one of {', '.join(BINDING_MODES)}")
        for i, t in enumerate(obj.allowed_topologies):
            for j, r in enumerate(t.match_label_expressions):
                if not r.values:
                    errs.append(f"allowedTopologies[{i}].matchLabelExpressions[{j}].values: at least one value")
    elif isinstance(obj, CSINode):
        for i, d in enumerate(obj.spec.drivers or ()):
            if not d.name:
                errs.append(f"spec.drivers[{i}].name: required")
            if d.allocatable is not None and d.allocatable.count is not None and d.allocatable.count < 0:
                errs.append(f"spec.drivers[{i}].allocatable.count: must be >= 0")
    elif isinstance(obj, CSIStorageCapacity):
        for name in ("capacity", "maximum_volume_size"):
            q = getattr(obj, name)
            if q is not None:
                errs += _quantity_errors({name: q}, "(root)")
    return errs
