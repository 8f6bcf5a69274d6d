"""Which DRA devices count as GPUs in queue quota, and how many a pod's claims take.

KAI counts DRA GPUs in the queue's GPU quota, fair share and limits: a device class is a GPU
class when its name contains ``gpu`` (KAI's ``IsGPUDeviceClass``). kai makes the rule a
setting: the ``dynamicresources`` plugin argument ``gpuDeviceClasses``, a comma-separated list
of DeviceClass names or shell patterns (``fnmatch``, case-insensitive); the default ``*gpu*`` is
KAI's rule, an empty value counts no DRA device as a GPU.

Per pod, every claim it uses counts (a shared claim counts for each pod that uses it, as in
KAI): an allocated claim by its results whose request took a GPU class; an unallocated one by
its spec -- ``count`` for ``ExactCount``, for ``allocationMode: All`` the most matching devices
one node reaches (an upper bound; KAI counts 1), for ``firstAvailable`` the first subrequest
(the one kube-scheduler tries first). Called by :mod:`kai.cache.dra_store` when a session
opens (the figure must be fixed for the whole session: the proportion plugin adds and
subtracts it with every placement and eviction).
"""
from __future__ import annotations

import fnmatch
from typing import Callable

from kai.api.dra import ALL, ResourceClaim

ARGUMENT = "gpuDeviceClasses"
DEFAULT_PATTERNS = "*gpu*"


class GpuClasses:
    """Membership test for GPU device classes (cached per class name)."""

    def __init__(self, patterns: str = DEFAULT_PATTERNS) -> None:
        self.source = patterns
        self.patterns = [p.strip().lower() for p in patterns.split(",") if p.strip()]
        self._memo: dict[str, bool] = {}

    def __contains__(self, class_name: str) -> bool:
        got = self._memo.get(class_name)
        if got is None:
            low = class_name.lower()
            got = self._memo[class_name] = any(fnmatch.fnmatchcase(low, p) for p in self.patterns)
        return got

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GpuClasses) and other.patterns == self.patterns

    def __repr__(self) -> str:
        return f"GpuClasses({self.source!r})"


def gpu_classes(arguments: dict[str, str] | None) -> GpuClasses:
    """The rule from the ``dynamicresources`` plugin arguments (default: KAI's)."""
    return GpuClasses((arguments or {}).get(ARGUMENT, DEFAULT_PATTERNS))


def request_classes(claim: ResourceClaim) -> dict[str, str]:
    """Result request name (``request`` or ``request/subrequest``) -> device class name."""
    out: dict[str, str] = {}
    for r in claim.spec.devices.requests:
        if r.exactly is not None:
            out[r.name] = r.exactly.device_class_name
        for s in r.first_available:
            out[f"{r.name}/{s.name}"] = s.device_class_name
    return out


def allocated_gpus(claim: ResourceClaim, results: list[dict], gpu: GpuClasses) -> int:
    """GPUs of an allocation: results whose request took a GPU class (admin access excluded)."""
    classes = request_classes(claim)
    return sum(1 for r in results if not r.get("adminAccess") and classes.get(r["request"], "") in gpu)


def requested_gpus(claim: ResourceClaim, gpu: GpuClasses, all_count: Callable[[object], int]) -> int:
    """GPUs an unallocated claim asks for; ``all_count(request)`` answers ``allocationMode: All``."""
    n = 0
    for r in claim.spec.devices.requests:
        e = r.exactly if r.exactly is not None else (r.first_available[0] if r.first_available else None)
        if e is None or e.device_class_name not in gpu or getattr(e, "admin_access", None):
            continue
        n += max(int(all_count(e)), 1) if e.allocation_mode == ALL else max(int(e.count), 1)
    return n
