"""Kubernetes and KAI objects as msgspec Structs: the subset of fields kai reads.

These decode straight from API JSON (``msgspec.json.decode(raw, type=Pod)``) or from
YAML-loaded dicts (``msgspec.convert``). Unknown fields are ignored, wrong types raise
``msgspec.ValidationError`` whose message names the JSON path (``$.spec.containers[0]``).
No I/O and no scheduling logic here.

Pods on nodes are most of a large cluster's objects and live as long as the pod runs, so the
informers keep them as :data:`BoundPod` (``decode_pod``): the same attribute paths as
:class:`Pod` minus the few fields nothing reads once a pod is on a node (its conditions, start
time, container images, env values, mount paths, finalizers), lists as tuples, a shared
read-only empty map for absent maps and no cyclic-GC tracking; parts equal across pods (label
maps, owner references, tolerations, resources, ...) are one shared object. Every field a scheduling
decision reads stays, since consolidation places running pods again.
"""
from __future__ import annotations

import functools
import operator
import sys
import types
import typing
from typing import Any

import msgspec


class _K(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    pass


class OwnerReference(_K):
    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool | None = None


class ObjectMeta(_K):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    finalizers: list[str] = []
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    owner_references: list[OwnerReference] = []


# --- Node ---------------------------------------------------------------------------------

class Taint(_K):
    key: str = ""
    value: str = ""
    effect: str = ""


class NodeSpec(_K):
    unschedulable: bool = False
    taints: list[Taint] = []


class NodeCondition(_K):
    type: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""


class NodeStatus(_K):
    allocatable: dict[str, str | int | float] = {}
    capacity: dict[str, str | int | float] = {}
    conditions: list[NodeCondition] = []


class Node(_K):
    api_version: str = "v1"
    kind: str = "Node"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


# --- Pod ----------------------------------------------------------------------------------

class ResourceClaimRef(_K):
    """A container's use of one of the pod's resource claims (``resources.claims[]``)."""
    name: str = ""
    request: str = ""


class ResourceRequirements(_K):
    requests: dict[str, str | int | float] = {}
    limits: dict[str, str | int | float] = {}
    claims: list[ResourceClaimRef] = []         # DRA: names of the pod's resourceClaims


class ContainerPort(_K):
    container_port: int = 0
    host_port: int = 0
    host_ip: str = msgspec.field(default="", name="hostIP")
    protocol: str = "TCP"


class ConfigMapKeySelector(_K):
    name: str = ""
    key: str = ""
    optional: bool | None = None


class EnvVarSource(_K):
    config_map_key_ref: ConfigMapKeySelector | None = None


class EnvVar(_K):
    name: str = ""
    value: str | None = None
    value_from: EnvVarSource | None = None


class ConfigMapEnvSource(_K):
    name: str = ""
    optional: bool | None = None


class EnvFromSource(_K):
    config_map_ref: ConfigMapEnvSource | None = None


class VolumeMount(_K):
    name: str = ""
    mount_path: str = ""


class Container(_K):
    name: str = ""
    image: str = ""
    resources: ResourceRequirements = msgspec.field(default_factory=ResourceRequirements)
    restart_policy: str | None = None
    ports: list[ContainerPort] = []
    env: list[EnvVar] = []
    env_from: list[EnvFromSource] = []
    volume_mounts: list[VolumeMount] = []


class NodeSelectorRequirement(_K):
    key: str = ""
    operator: str = ""
    values: list[str] = []


class NodeSelectorTerm(_K):
    match_expressions: list[NodeSelectorRequirement] = []
    match_fields: list[NodeSelectorRequirement] = []


class NodeSelector(_K):
    node_selector_terms: list[NodeSelectorTerm] = []


class PreferredSchedulingTerm(_K):
    weight: int = 0
    preference: NodeSelectorTerm = msgspec.field(default_factory=NodeSelectorTerm)


class NodeAffinity(_K):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = []


class LabelSelectorRequirement(_K):
    key: str = ""
    operator: str = ""
    values: list[str] = []


class LabelSelector(_K):
    """metav1.LabelSelector. A missing selector (None where it is optional) matches nothing;
    an empty one (``{}``) matches everything."""
    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []


class PodAffinityTerm(_K):
    label_selector: LabelSelector | None = None
    namespaces: list[str] = []
    topology_key: str = ""
    namespace_selector: LabelSelector | None = None
    match_label_keys: list[str] = []
    mismatch_label_keys: list[str] = []


class WeightedPodAffinityTerm(_K):
    weight: int = 0
    pod_affinity_term: PodAffinityTerm = msgspec.field(default_factory=PodAffinityTerm)


class PodAffinity(_K):
    """Also the shape of podAntiAffinity."""
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = []
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = []


class Affinity(_K):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class TopologySpreadConstraint(_K):
    max_skew: int = 0
    topology_key: str = ""
    when_unsatisfiable: str = ""
    label_selector: LabelSelector | None = None
    min_domains: int | None = None
    node_affinity_policy: str | None = None
    node_taints_policy: str | None = None
    match_label_keys: list[str] = []


# --- volumes: the sources that decide where a pod can run ---------------------------------

class PersistentVolumeClaimVolumeSource(_K):
    claim_name: str = ""
    read_only: bool = False


class ConfigMapVolumeSource(_K):
    name: str = ""
    optional: bool | None = None


class VolumeProjection(_K):
    config_map: ConfigMapVolumeSource | None = None


class ProjectedVolumeSource(_K):
    sources: list[VolumeProjection] = []


class EphemeralVolumeSource(_K):
    volume_claim_template: dict[str, Any] | None = None


class CSIVolumeSource(_K):
    driver: str = ""


class Volume(_K):
    """A pod volume. Sources that do not constrain scheduling (emptyDir, secret, hostPath,
    downwardAPI, ...) are not modelled; the in-tree disk sources that kube-scheduler's volume
    plugins restrict are kept raw so kai can refuse them by name (kai.api.pod_fields)."""
    name: str = ""
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    ephemeral: EphemeralVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    csi: CSIVolumeSource | None = None
    gce_persistent_disk: dict[str, Any] | None = None
    aws_elastic_block_store: dict[str, Any] | None = None
    azure_disk: dict[str, Any] | None = None
    azure_file: dict[str, Any] | None = None
    cinder: dict[str, Any] | None = None
    rbd: dict[str, Any] | None = None
    iscsi: dict[str, Any] | None = None
    portworx_volume: dict[str, Any] | None = None
    vsphere_volume: dict[str, Any] | None = None
    photon_persistent_disk: dict[str, Any] | None = None
    scale_io: dict[str, Any] | None = msgspec.field(default=None, name="scaleIO")
    storageos: dict[str, Any] | None = None
    flocker: dict[str, Any] | None = None


class Toleration(_K):
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""
    toleration_seconds: int | None = None


class SchedulingGate(_K):
    name: str = ""


class PodResourceClaim(_K):
    """``spec.resourceClaims[]``: a ResourceClaim by name, or one generated from a template."""
    name: str = ""
    resource_claim_name: str | None = None
    resource_claim_template_name: str | None = None


class PodResourceClaimStatus(_K):
    """``status.resourceClaimStatuses[]``: the claim generated for a template entry."""
    name: str = ""
    resource_claim_name: str | None = None


class PodSpec(_K):
    """The pod fields kai reads: every field kube-scheduler's filters and scores read is here,
    so kai either honours it or refuses the pod naming it (kai.api.pod_fields)."""
    containers: list[Container] = []
    init_containers: list[Container] = []
    ephemeral_containers: list[Container] = []
    overhead: dict[str, str | int | float] = {}
    resources: ResourceRequirements | None = None        # pod-level resources (PodLevelResources)
    node_selector: dict[str, str] = {}
    affinity: Affinity | None = None
    tolerations: list[Toleration] = []
    topology_spread_constraints: list[TopologySpreadConstraint] = []
    volumes: list[Volume] = []
    host_network: bool = False
    scheduler_name: str = "default-scheduler"
    priority_class_name: str = ""
    priority: int | None = None
    preemption_policy: str | None = None
    scheduling_gates: list[SchedulingGate] = []
    node_name: str = ""
    restart_policy: str = "Always"
    resource_claims: list[PodResourceClaim] = []


class PodCondition(_K):
    type: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None


class PodStatus(_K):
    phase: str = "Pending"
    conditions: list[PodCondition] = []
    nominated_node_name: str = ""
    start_time: str | None = None
    resource_claim_statuses: list[PodResourceClaimStatus] = []


class Pod(_K):
    api_version: str = "v1"
    kind: str = "Pod"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


# --- PriorityClass ------------------------------------------------------------------------

class PriorityClass(_K):
    api_version: str = "scheduling.k8s.io/v1"
    kind: str = "PriorityClass"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    value: int = 0
    global_default: bool = False
    preemption_policy: str | None = None


# --- Queue (scheduling.run.ai/v2) ---------------------------------------------------------

class QueueResource(_K):
    # No defaulting, exactly as KAI's CRD: an omitted limit is 0, which admits nothing.
    quota: float = 0.0
    over_quota_weight: float = 0.0
    limit: float = 0.0


class QueueResources(_K):
    gpu: QueueResource | None = None
    cpu: QueueResource | None = None
    memory: QueueResource | None = None


class QueueSpec(_K):
    display_name: str = ""
    parent_queue: str = ""
    priority: int | None = None
    resources: QueueResources | None = None
    preempt_min_runtime: str | None = None
    reclaim_min_runtime: str | None = None


class Queue(_K):
    api_version: str = "scheduling.run.ai/v2"
    kind: str = "Queue"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: QueueSpec = msgspec.field(default_factory=QueueSpec)
    status: dict[str, Any] = {}


# --- PodGroup (scheduling.run.ai/v2alpha2) ------------------------------------------------

class TopologyConstraint(_K):
    topology: str = ""
    required_topology_level: str = ""
    preferred_topology_level: str = ""


class SubGroup(_K):
    name: str = ""
    min_member: int = 1
    parent: str | None = None
    topology_constraint: TopologyConstraint | None = None


class PodGroupSpec(_K):
    min_member: int = 1
    queue: str = ""
    priority_class_name: str = ""
    preemptibility: str = ""
    mark_unschedulable: bool | None = None
    scheduling_backoff: int | None = None
    topology_constraint: TopologyConstraint | None = None
    staleness_grace_period: str | None = None     # newer KAI field (Go duration); overrides the flag
    sub_groups: list[SubGroup] = []
    staleness_grace_period: str | None = None   # per-job override of the stale-gang grace (Go duration)


class PodGroup(_K):
    api_version: str = "scheduling.run.ai/v2alpha2"
    kind: str = "PodGroup"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodGroupSpec = msgspec.field(default_factory=PodGroupSpec)
    status: dict[str, Any] = {}


# --- Topology (kai.scheduler/v1alpha1) ----------------------------------------------------

class TopologyLevel(_K):
    node_label: str = ""


class TopologySpec(_K):
    levels: list[TopologyLevel] = []


class Topology(_K):
    api_version: str = "kai.scheduler/v1alpha1"
    kind: str = "Topology"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: TopologySpec = msgspec.field(default_factory=TopologySpec)


class Namespace(_K):
    """Only its labels matter to kai (namespaceSelector of pod affinity terms)."""
    api_version: str = "v1"
    kind: str = "Namespace"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


KINDS: dict[str, type] = {
    "Namespace": Namespace,
    "Node": Node,
    "Pod": Pod,
    "PodGroup": PodGroup,
    "Queue": Queue,
    "PriorityClass": PriorityClass,
    "Topology": Topology,
}


# --- pods on nodes: the compact variant the informers keep -------------------------------

class _ReadOnlyDict(dict):
    """A map of compact objects shared between pods (EMPTY_MAP, pooled label maps); mutating
    it raises."""
    __slots__ = ()

    def _read_only(self, *a, **k):
        raise TypeError("a decoded pod's map is shared between pods and read-only")

    __setitem__ = __delitem__ = setdefault = update = pop = popitem = clear = __ior__ = _read_only


EMPTY_MAP: dict = _ReadOnlyDict()

#: fields a pod on a node does not need: (struct name, field name)
BOUND_POD_DROPS = frozenset({
    ("PodStatus", "conditions"), ("PodStatus", "start_time"), ("Container", "image"),
    ("EnvVar", "value"), ("VolumeMount", "mount_path"), ("ObjectMeta", "finalizers"),
})


def _compact_family(root: type, drops: frozenset, prefix: str) -> type:
    """A variant of ``root`` and of every Struct type under it: same fields, names and JSON
    names minus ``drops``; lists are tuples (smaller, and an absent one is the empty tuple),
    an absent map is the shared read-only EMPTY_MAP instead of a new dict per object;
    ``gc=False`` (decoded API objects are trees). Encoded, a compact object is the JSON of the
    original (omitted defaults included) as long as the API server omitted empty lists and
    maps, which it does (``omitempty``)."""
    made: dict[type, type] = {}

    def conv(tp):
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return variant(tp)
        args = typing.get_args(tp)
        if not args:
            return tp
        new = tuple(conv(a) for a in args)
        origin = typing.get_origin(tp)
        if origin is list:
            return tuple[new[0], ...]
        if origin is types.UnionType:
            return functools.reduce(operator.or_, new)
        if origin is typing.Union:
            return typing.Union[new]
        return origin[new]

    def variant(cls: type) -> type:
        got = made.get(cls)
        if got is not None:
            return got
        fields = []
        for f in msgspec.structs.fields(cls):
            if (cls.__name__, f.name) in drops:
                continue
            factory = f.default_factory
            if factory is list:
                spec = msgspec.field(default=(), name=f.encode_name)
            elif factory is dict:
                spec = msgspec.field(default=EMPTY_MAP, name=f.encode_name)
            elif factory is not msgspec.NODEFAULT:
                spec = msgspec.field(default_factory=conv(factory), name=f.encode_name)
            else:
                spec = msgspec.field(default=f.default, name=f.encode_name)
            fields.append((f.name, conv(f.type), spec))
        got = made[cls] = msgspec.defstruct(prefix + cls.__name__, fields, module=__name__, kw_only=True,
                                            omit_defaults=True, gc=False)
        return got

    return variant(root)


#: a pod with ``spec.nodeName`` set, as the informers keep it (see the module docstring)
BoundPod = _compact_family(Pod, BOUND_POD_DROPS, "Bound")

_bound_pod_decoder = msgspec.json.Decoder(BoundPod)
_pod_decoder = msgspec.json.Decoder(Pod)


def decode_pod(raw: bytes) -> Pod:
    """A pod from API JSON: a :data:`BoundPod` sharing what it has in common with earlier ones
    (``share_bound_pod``) when it is on a node, else a :class:`Pod` (a pending pod keeps
    everything: its conditions are read back, its fields reported). Raises what
    ``msgspec.json.decode(raw, type=Pod)`` raises for a pending pod, and for a bound one
    whenever a field it keeps does not fit."""
    pod = _bound_pod_decoder.decode(raw)
    if pod.spec.node_name:
        return share_bound_pod(pod)
    return _pod_decoder.decode(raw)


# --- sharing what pods on nodes have in common ---------------------------------------------

_POOL: dict = {}
_POOL_MAX = 20_000                # pods of a job or node come together: a small pool suffices
_encode = msgspec.json.Encoder().encode


def _pooled(field: str, value):
    """The pool's object equal to ``value`` (a compact Struct, or a tuple of them) of ``field``,
    pooled if new. Keyed by the field and the JSON (equal JSON, equal value: ``{}`` of a default
    toleration and of a default owner reference are different fields)."""
    if len(_POOL) >= _POOL_MAX:
        _POOL.clear()                     # objects already shared stay shared
    return _POOL.setdefault((field, _encode(value)), value)


def _pooled_map(d: dict) -> dict:
    if not d:
        return EMPTY_MAP
    if len(_POOL) >= _POOL_MAX:
        _POOL.clear()
    key = ("map", tuple(d.items()))
    got = _POOL.get(key)
    if got is None:
        got = _POOL[key] = _ReadOnlyDict(d)
    return got


_intern = sys.intern


def share_bound_pod(pod):
    """Make a decoded :data:`BoundPod` share what it has in common with pods decoded before it
    (repeated strings, label and annotation maps, owner references, tolerations, affinity,
    container resources and env, projected volumes, status): equal values become one object.
    Shared maps are read-only; nothing in kai mutates a decoded object in place."""
    m = pod.metadata
    m.namespace = _intern(m.namespace)
    if m.creation_timestamp:
        m.creation_timestamp = _intern(m.creation_timestamp)
    m.labels = _pooled_map(m.labels)
    m.annotations = _pooled_map(m.annotations)
    if m.owner_references:
        m.owner_references = _pooled("ownerReferences", m.owner_references)
    s = pod.spec
    s.node_name = _intern(s.node_name)
    s.scheduler_name = _intern(s.scheduler_name)
    s.priority_class_name = _intern(s.priority_class_name)
    s.restart_policy = _intern(s.restart_policy)
    if s.preemption_policy:
        s.preemption_policy = _intern(s.preemption_policy)
    if s.tolerations:
        s.tolerations = _pooled("tolerations", s.tolerations)
    if s.affinity is not None:
        s.affinity = _pooled("affinity", s.affinity)
    if s.node_selector:
        s.node_selector = _pooled_map(s.node_selector)
    if s.topology_spread_constraints:
        s.topology_spread_constraints = _pooled("topologySpreadConstraints", s.topology_spread_constraints)
    # the service-account volume's name is unique to the pod: its mounts share the string
    vnames = {v.name: v.name for v in s.volumes}
    for cs in (s.containers, s.init_containers):
        for c in cs:
            c.name = _intern(c.name)
            for vm in c.volume_mounts:
                vm.name = vnames.get(vm.name, vm.name)
            c.resources = _pooled("resources", c.resources)
            if c.env:
                c.env = _pooled("env", c.env)
            if c.ports:
                c.ports = _pooled("ports", c.ports)
    for v in s.volumes:
        if v.projected is not None:
            v.projected = _pooled("projected", v.projected)
        if v.config_map is not None:
            v.config_map = _pooled("configMap", v.config_map)
    pod.status = _pooled("status", pod.status)
    return pod
