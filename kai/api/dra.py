"""Dynamic Resource Allocation objects (``resource.k8s.io/v1``) as msgspec Structs.

ResourceSlice (what a driver publishes), DeviceClass (admin-defined device filters and
config), ResourceClaim and ResourceClaimTemplate (what a pod asks for), decoded straight from
API JSON or YAML-loaded dicts like the models in :mod:`kai.api.k8s`: unknown fields are
ignored, wrong types raise ``msgspec.ValidationError`` naming the JSON path.

Field names that are Python builtins (``int``, ``bool``) carry a trailing underscore and keep
their JSON name. :func:`validate` checks what the API server's validation would refuse and
the allocator relies on (``kai simulate`` reads manifests no API server has seen).
No I/O and no allocation logic here: the allocator lives in :mod:`kai.dra`.
"""
from __future__ import annotations

from typing import Any

import msgspec

from kai.api.k8s import NodeSelector, ObjectMeta
from kai.api.resources import QuantityError, parse_quantity

GROUP = "resource.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

EXACT_COUNT = "ExactCount"
ALL = "All"
ALLOCATION_MODES = (EXACT_COUNT, ALL)
RESULTS_MAX = 32            # resourceapi.AllocationResultsMaxSize
RESERVED_FOR_MAX = 256      # resourceapi.ResourceClaimReservedForMaxSize


class _K(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    pass


# --- ResourceSlice ------------------------------------------------------------------------

class DeviceAttribute(_K):
    """Exactly one of the four values is set."""
    int_: int | None = msgspec.field(default=None, name="int")
    bool_: bool | None = msgspec.field(default=None, name="bool")
    string: str | None = None
    version: str | None = None


class DeviceCapacity(_K):
    value: str | int | float = "0"
    request_policy: dict[str, Any] | None = None     # consumable capacity (not honoured)


class DeviceTaint(_K):
    key: str = ""
    value: str = ""
    effect: str = ""
    time_added: str | None = None


class DeviceCounterConsumption(_K):
    counter_set: str = ""
    counters: dict[str, Any] = {}


class Device(_K):
    name: str = ""
    attributes: dict[str, DeviceAttribute] = {}
    capacity: dict[str, DeviceCapacity] = {}
    consumes_counters: list[DeviceCounterConsumption] = []
    node_name: str | None = None
    node_selector: NodeSelector | None = None
    all_nodes: bool | None = None
    taints: list[DeviceTaint] = []
    binds_to_node: bool | None = None
    binding_conditions: list[str] = []
    binding_failure_conditions: list[str] = []
    allow_multiple_allocations: bool | None = None


class ResourcePool(_K):
    name: str = ""
    generation: int = 0
    resource_slice_count: int = 0


class ResourceSliceSpec(_K):
    driver: str = ""
    pool: ResourcePool = msgspec.field(default_factory=ResourcePool)
    node_name: str | None = None
    node_selector: NodeSelector | None = None
    all_nodes: bool | None = None
    per_device_node_selection: bool | None = None
    devices: list[Device] = []
    shared_counters: list[dict[str, Any]] = []


class ResourceSlice(_K):
    api_version: str = API_VERSION
    kind: str = "ResourceSlice"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ResourceSliceSpec = msgspec.field(default_factory=ResourceSliceSpec)


# --- DeviceClass --------------------------------------------------------------------------

class CELDeviceSelector(_K):
    expression: str = ""


class DeviceSelector(_K):
    cel: CELDeviceSelector | None = None


class OpaqueDeviceConfiguration(_K):
    driver: str = ""
    parameters: Any = None


class DeviceClassConfiguration(_K):
    opaque: OpaqueDeviceConfiguration | None = None


class DeviceClassSpec(_K):
    selectors: list[DeviceSelector] = []
    config: list[DeviceClassConfiguration] = []
    extended_resource_name: str | None = None


class DeviceClass(_K):
    api_version: str = API_VERSION
    kind: str = "DeviceClass"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: DeviceClassSpec = msgspec.field(default_factory=DeviceClassSpec)


# --- ResourceClaim ------------------------------------------------------------------------

class DeviceToleration(_K):
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""
    toleration_seconds: int | None = None


class CapacityRequirements(_K):
    requests: dict[str, str | int | float] = {}


class ExactDeviceRequest(_K):
    device_class_name: str = ""
    selectors: list[DeviceSelector] = []
    allocation_mode: str = EXACT_COUNT
    count: int = 1
    admin_access: bool | None = None
    tolerations: list[DeviceToleration] = []
    capacity: CapacityRequirements | None = None


class DeviceSubRequest(_K):
    name: str = ""
    device_class_name: str = ""
    selectors: list[DeviceSelector] = []
    allocation_mode: str = EXACT_COUNT
    count: int = 1
    tolerations: list[DeviceToleration] = []
    capacity: CapacityRequirements | None = None


class DeviceRequest(_K):
    name: str = ""
    exactly: ExactDeviceRequest | None = None
    first_available: list[DeviceSubRequest] = []


class DeviceConstraint(_K):
    requests: list[str] = []
    match_attribute: str | None = None
    distinct_attribute: str | None = None


class DeviceClaimConfiguration(_K):
    requests: list[str] = []
    opaque: OpaqueDeviceConfiguration | None = None


class DeviceClaim(_K):
    requests: list[DeviceRequest] = []
    constraints: list[DeviceConstraint] = []
    config: list[DeviceClaimConfiguration] = []


class ResourceClaimSpec(_K):
    devices: DeviceClaim = msgspec.field(default_factory=DeviceClaim)


class DeviceRequestAllocationResult(_K):
    request: str = ""
    driver: str = ""
    pool: str = ""
    device: str = ""
    admin_access: bool | None = None
    tolerations: list[DeviceToleration] = []
    binding_conditions: list[str] = []
    binding_failure_conditions: list[str] = []
    share_id: str | None = msgspec.field(default=None, name="shareID")
    consumed_capacity: dict[str, Any] = {}


class DeviceAllocationConfiguration(_K):
    source: str = ""
    requests: list[str] = []
    opaque: OpaqueDeviceConfiguration | None = None


class DeviceAllocationResult(_K):
    results: list[DeviceRequestAllocationResult] = []
    config: list[DeviceAllocationConfiguration] = []


class AllocationResult(_K):
    devices: DeviceAllocationResult = msgspec.field(default_factory=DeviceAllocationResult)
    node_selector: NodeSelector | None = None
    allocation_timestamp: str | None = None


class ResourceClaimConsumerReference(_K):
    api_group: str = ""
    resource: str = ""
    name: str = ""
    uid: str = ""


class ResourceClaimStatus(_K):
    allocation: AllocationResult | None = None
    reserved_for: list[ResourceClaimConsumerReference] = []
    devices: list[dict[str, Any]] = []


class ResourceClaim(_K):
    api_version: str = API_VERSION
    kind: str = "ResourceClaim"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ResourceClaimSpec = msgspec.field(default_factory=ResourceClaimSpec)
    status: ResourceClaimStatus = msgspec.field(default_factory=ResourceClaimStatus)


class ResourceClaimTemplateSpec(_K):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ResourceClaimSpec = msgspec.field(default_factory=ResourceClaimSpec)


class ResourceClaimTemplate(_K):
    api_version: str = API_VERSION
    kind: str = "ResourceClaimTemplate"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ResourceClaimTemplateSpec = msgspec.field(default_factory=ResourceClaimTemplateSpec)


DRA_KINDS: dict[str, type] = {
    "ResourceSlice": ResourceSlice,
    "DeviceClass": DeviceClass,
    "ResourceClaim": ResourceClaim,
    "ResourceClaimTemplate": ResourceClaimTemplate,
}
NAMESPACED = {"ResourceClaim", "ResourceClaimTemplate"}


# --- validation ---------------------------------------------------------------------------

def attribute_value(attr: DeviceAttribute) -> tuple[str, Any] | None:
    """``(type, value)`` of an attribute: type is int/bool/string/version; None if none is set."""
    if attr.int_ is not None:
        return "int", attr.int_
    if attr.bool_ is not None:
        return "bool", attr.bool_
    if attr.string is not None:
        return "string", attr.string
    if attr.version is not None:
        return "version", attr.version
    return None


def _validate_spec(spec: ResourceClaimSpec, where: str) -> list[str]:
    errs: list[str] = []
    seen: set[str] = set()
    d = spec.devices
    for i, r in enumerate(d.requests):
        w = f"{where}.devices.requests[{i}]"
        if not r.name:
            errs.append(f"{w}.name: required")
        elif r.name in seen:
            errs.append(f"{w}.name: duplicate request name {r.name!r}")
        seen.add(r.name)
        if (r.exactly is None) == (not r.first_available):
            errs.append(f"{w}: exactly one of exactly and firstAvailable must be set")
            continue
        subs: list[tuple[str, Any]] = [(f"{w}.exactly", r.exactly)] if r.exactly is not None else \
            [(f"{w}.firstAvailable[{j}]", s) for j, s in enumerate(r.first_available)]
        sub_names: set[str] = set()
        for sw, s in subs:
            if isinstance(s, DeviceSubRequest):
                if not s.name:
                    errs.append(f"{sw}.name: required")
                elif s.name in sub_names:
                    errs.append(f"{sw}.name: duplicate subrequest name {s.name!r}")
                sub_names.add(s.name)
            if not s.device_class_name:
                errs.append(f"{sw}.deviceClassName: required")
            if s.allocation_mode not in ALLOCATION_MODES:
                errs.append(f"{sw}.allocationMode: must be one of {', '.join(ALLOCATION_MODES)}, "
                            f"not {s.allocation_mode!r}")
            if s.allocation_mode == EXACT_COUNT and s.count < 1:
                errs.append(f"{sw}.count: must be at least 1, not {s.count}")
            for k, sel in enumerate(s.selectors):
                if sel.cel is None or not sel.cel.expression.strip():
                    errs.append(f"{sw}.selectors[{k}].cel.expression: required")
            if s.capacity is not None:
                for name, q in s.capacity.requests.items():
                    try:
                        parse_quantity(q)
                    except QuantityError as exc:
                        errs.append(f"{sw}.capacity.requests.{name}: {exc}")
    for i, c in enumerate(d.constraints):
        w = f"{where}.devices.constraints[{i}]"
        if c.match_attribute is None and c.distinct_attribute is None:
            errs.append(f"{w}: matchAttribute or distinctAttribute is required")
        for name in c.requests:
            if name.split("/", 1)[0] not in seen:
                errs.append(f"{w}.requests: unknown request {name!r}")
    return errs


def validate(obj: Any) -> list[str]:
    """Problems the API server would refuse, as ``field.path: message`` strings (empty: valid)."""
    errs: list[str] = []
    if isinstance(obj, ResourceClaim):
        errs += _validate_spec(obj.spec, "spec")
    elif isinstance(obj, ResourceClaimTemplate):
        errs += _validate_spec(obj.spec.spec, "spec.spec")
    elif isinstance(obj, DeviceClass):
        for k, sel in enumerate(obj.spec.selectors):
            if sel.cel is None or not sel.cel.expression.strip():
                errs.append(f"spec.selectors[{k}].cel.expression: required")
    elif isinstance(obj, ResourceSlice):
        s = obj.spec
        if not s.driver:
            errs.append("spec.driver: required")
        if not s.pool.name:
            errs.append("spec.pool.name: required")
        if s.pool.resource_slice_count < 1:
            errs.append("spec.pool.resourceSliceCount: must be at least 1")
        n_sel = sum(x for x in (bool(s.node_name), s.node_selector is not None, bool(s.all_nodes),
                                bool(s.per_device_node_selection)))
        if n_sel != 1:
            errs.append("spec: exactly one of nodeName, nodeSelector, allNodes and perDeviceNodeSelection "
                        "must be set")
        names: set[str] = set()
        for i, dev in enumerate(s.devices):
            w = f"spec.devices[{i}]"
            if not dev.name:
                errs.append(f"{w}.name: required")
            elif dev.name in names:
                errs.append(f"{w}.name: duplicate device name {dev.name!r}")
            names.add(dev.name)
            for a, attr in dev.attributes.items():
                if attribute_value(attr) is None:
                    errs.append(f"{w}.attributes.{a}: exactly one of int, bool, string and version must be set")
            for c, cap in dev.capacity.items():
                try:
                    parse_quantity(cap.value)
                except QuantityError as exc:
                    errs.append(f"{w}.capacity.{c}.value: {exc}")
    return errs
