"""The node-scale-adjuster's decisions, as pure functions over pods (no I/O).

A cluster autoscaler (or Karpenter) adds nodes for pods the default scheduler reports as
unschedulable, sized by their resource requests. A GPU-sharing pod asks for its GPU through
annotations (``gpu-fraction``, ``gpu-memory``), so an autoscaler never sees it needing a GPU.
For such pods, when kai marked them ``PodScheduled=False`` / ``Unschedulable``, KAI's
node-scale-adjuster creates *scaling pods*: placeholders in their own namespace
(``kai-scale-adjust``), with no ``schedulerName`` (so they belong to the default scheduler,
which the autoscaler simulates). Each asks for whole ``nvidia.com/gpu`` devices plus the
fraction pod's CPU and memory, and copies its node selector, affinity and tolerations.

The rules (KAI's ``pkg/nodescaleadjuster``), implemented in :func:`plan`:
- GPUs needed = ceil(sum over unschedulable sharing pods of fraction × devices), each fraction
  rounded to 1/100; a gpu-memory pod counts as ``gpu_memory_to_fraction_ratio`` (0.1) of a
  GPU, because the new node's GPU memory is not known in advance;
- one scaling pod per fraction pod at most, named ``<namespace>-<name>``, requesting the
  pod's device count. It is created only while the scaling pods already there request fewer
  GPUs than needed, or when the pod needs more devices than any one scaling pod asks for;
- a scaling pod is deleted when it has completed, when its fraction pod is gone, or when its
  fraction pod is no longer unschedulable (placed, or not yet judged);
- after deleting one, nothing new is created for a cool-down period (60 s): the new node and
  kai's placements settle first.

Called by ``kai.nodescaleadjuster.adjuster`` (the live loop).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterable

import msgspec

from kai.api import constants as C
from kai.api.gpu_sharing import parse_gpu_sharing_annotations
from kai.api.k8s import Pod
from kai.api.resources import GPU_RESOURCE, QuantityError, parse_quantity

# labels and annotations that tie a scaling pod to its fraction pod (KAI's names)
SHARED_GPU_POD_NAME = "shared-gpu-pod-name"
SHARED_GPU_POD_NAMESPACE = "shared-gpu-pod-namespace"
APP_LABEL = "app"
CONTAINER_NAME = "scaling-pod"
DEFAULT_NAMESPACE = "kai-scale-adjust"
DEFAULT_APP_LABEL = "scaling-pod"
DEFAULT_SERVICE_ACCOUNT = "scaling-pod"
DEFAULT_GPU_MEMORY_TO_FRACTION_RATIO = 0.1
DEFAULT_COOL_DOWN_SECONDS = 60.0
_ROUNDING = 100                  # fractions are summed in hundredths of a GPU


@dataclass(frozen=True)
class Settings:
    """The adjuster's flags (KAI's node-scale-adjuster flags)."""
    scheduler_name: str = C.SCHEDULER_NAME
    namespace: str = DEFAULT_NAMESPACE
    image: str = "kai:latest"
    command: tuple[str, ...] = ("/bin/true",)
    app_label: str = DEFAULT_APP_LABEL
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    gpu_memory_to_fraction_ratio: float = DEFAULT_GPU_MEMORY_TO_FRACTION_RATIO
    cool_down_seconds: float = DEFAULT_COOL_DOWN_SECONDS


def sharing_request(pod: Pod, ratio: float) -> tuple[float, int] | None:
    """(GPU fraction per device, devices) of a GPU-sharing pod, a gpu-memory request counting
    as ``ratio``; None for a pod without a valid sharing request."""
    gs, _why = parse_gpu_sharing_annotations(pod.metadata.annotations, whole_gpus=False)
    if gs is None:
        return None
    return (gs.portion if gs.portion else ratio), gs.num_devices


def is_unschedulable(pod: Pod) -> bool:
    """kai (or any scheduler) said it cannot place the pod: PodScheduled=False, Unschedulable."""
    for c in pod.status.conditions:
        if c.type == "PodScheduled":
            return c.status == "False" and c.reason == "Unschedulable"
    return False


def pods_to_scale(pods: Iterable[Pod], settings: Settings) -> list[Pod]:
    """The pending, alive, unschedulable GPU-sharing pods of our scheduler, oldest first."""
    out = []
    for p in pods:
        if (p.spec.node_name or p.spec.scheduler_name != settings.scheduler_name
                or p.status.phase in ("Succeeded", "Failed") or p.metadata.deletion_timestamp
                or not is_unschedulable(p)
                or sharing_request(p, settings.gpu_memory_to_fraction_ratio) is None):
            continue
        out.append(p)
    out.sort(key=lambda p: (p.metadata.creation_timestamp or "", p.metadata.namespace, p.metadata.name))
    return out


def needed_devices(pods: Iterable[Pod], ratio: float) -> int:
    """Whole GPUs the pods' fractions add up to (each fraction in hundredths, as KAI)."""
    hundredths = 0
    for p in pods:
        req = sharing_request(p, ratio)
        if req is not None:
            hundredths += int(round(req[0] * _ROUNDING)) * req[1]
    return math.ceil(hundredths / _ROUNDING)


def scaling_pod_name(namespace: str, name: str) -> str:
    """``<namespace>-<name>`` (KAI's), shortened with a hash past the 253-character limit."""
    full = f"{namespace}-{name}"
    if len(full) <= 253:
        return full
    return f"{full[:240]}-{hashlib.sha256(full.encode()).hexdigest()[:12]}"


def target_of(scaling_pod: Pod) -> tuple[str, str]:
    """(namespace, name) of the fraction pod a scaling pod stands for."""
    ann, lab = scaling_pod.metadata.annotations, scaling_pod.metadata.labels
    return (ann.get(SHARED_GPU_POD_NAMESPACE) or lab.get(SHARED_GPU_POD_NAMESPACE, ""),
            ann.get(SHARED_GPU_POD_NAME) or lab.get(SHARED_GPU_POD_NAME, ""))


def scaling_gpus(scaling_pod: Pod) -> int:
    """The whole GPUs a scaling pod requests (its first container's request)."""
    for c in scaling_pod.spec.containers[:1]:
        try:
            return int(parse_quantity(c.resources.requests.get(GPU_RESOURCE, 0)))
        except QuantityError:
            return 0
    return 0


def _label_value_ok(v: str) -> bool:
    return len(v) <= 63 and (not v or (v[0].isalnum() and v[-1].isalnum()))


def _sum_requests(pod: Pod, resource: str) -> str | None:
    total, seen = 0, False
    for c in pod.spec.containers:
        v = c.resources.requests.get(resource)
        if v is None:
            continue
        try:
            total += parse_quantity(v)
            seen = True
        except QuantityError:
            continue
    if not seen:
        return None
    if resource == "cpu":
        return f"{int(math.ceil(total * 1000))}m"
    return str(int(math.ceil(total)))


def scaling_pod_manifest(pod: Pod, devices: int, settings: Settings) -> dict:
    """The scaling pod for ``pod``: ``devices`` whole GPUs plus the pod's CPU and memory
    requests, its node selector, affinity and tolerations; default scheduler."""
    m = pod.metadata
    requests = {GPU_RESOURCE: str(devices)}
    for r in ("cpu", "memory"):
        v = _sum_requests(pod, r)
        if v is not None:
            requests[r] = v
    labels = {APP_LABEL: settings.app_label}
    for key, value in ((SHARED_GPU_POD_NAME, m.name), (SHARED_GPU_POD_NAMESPACE, m.namespace)):
        if _label_value_ok(value):          # a pod name may be longer than a label value may
            labels[key] = value
    spec: dict = {
        "restartPolicy": "OnFailure",
        "serviceAccountName": settings.service_account,
        "containers": [{"name": CONTAINER_NAME, "image": settings.image, "imagePullPolicy": "IfNotPresent",
                        **({"command": list(settings.command)} if settings.command else {}),
                        "resources": {"requests": requests, "limits": {GPU_RESOURCE: str(devices)}}}],
    }
    if pod.spec.node_selector:
        spec["nodeSelector"] = dict(pod.spec.node_selector)
    if pod.spec.affinity is not None:
        spec["affinity"] = msgspec.to_builtins(pod.spec.affinity)
    if pod.spec.tolerations:
        spec["tolerations"] = msgspec.to_builtins(pod.spec.tolerations)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": scaling_pod_name(m.namespace, m.name), "namespace": settings.namespace,
                         "labels": labels,
                         "annotations": {SHARED_GPU_POD_NAME: m.name, SHARED_GPU_POD_NAMESPACE: m.namespace}},
            "spec": spec}


@dataclass
class Plan:
    """What one pass does: scaling pods to delete (names), then fraction pods to create
    scaling pods for, each with its device count."""
    delete: list[str] = field(default_factory=list)
    create: list[tuple[Pod, int]] = field(default_factory=list)
    needed: int = 0


def still_needed(scaling_pod: Pod, pending: dict[tuple[str, str], Pod]) -> bool:
    """A scaling pod stays while it has not completed and its fraction pod is pending and
    unschedulable (``pending``: our scheduler's unbound pods by (namespace, name))."""
    if scaling_pod.status.phase == "Succeeded":
        return False
    target = pending.get(target_of(scaling_pod))
    return target is not None and not target.spec.node_name and is_unschedulable(target)


def plan(pending: Iterable[Pod], scaling: Iterable[Pod], settings: Settings, cooling_down: bool) -> Plan:
    """KAI's adjust pass over our scheduler's unbound pods and the existing scaling pods."""
    pending_by_key = {(p.metadata.namespace, p.metadata.name): p for p in pending}
    out = Plan()
    kept: list[Pod] = []
    for sp in scaling:
        if sp.metadata.deletion_timestamp:
            continue
        if still_needed(sp, pending_by_key):
            kept.append(sp)
        else:
            out.delete.append(sp.metadata.name)
    if out.delete or cooling_down:
        return out                       # a deletion starts the cool-down: create nothing now
    candidates = pods_to_scale(pending_by_key.values(), settings)
    out.needed = needed_devices(candidates, settings.gpu_memory_to_fraction_ratio)
    if not out.needed:
        return out
    have = {target_of(sp) for sp in kept}
    total = sum(scaling_gpus(sp) for sp in kept)
    largest = max((scaling_gpus(sp) for sp in kept), default=0)
    for p in candidates:
        if (p.metadata.namespace, p.metadata.name) in have:
            continue
        devices = sharing_request(p, settings.gpu_memory_to_fraction_ratio)[1]
        if out.needed > total or devices > largest:
            out.create.append((p, devices))
            total += devices
            largest = max(largest, devices)
    return out
