"""The GPU-sharing annotations of a pod, validated once for the webhook and the scheduler.

``gpu-fraction`` (0 < f < 1 of a device), ``gpu-memory`` (MiB per device) and
``gpu-fraction-num-devices`` (how many such devices, default 1), with ``mps``. The rules and
messages are KAI's admission webhook's (``ValidateGPUFractionRequest``), so a KAI user gets
the same rejection from ``kai webhook`` and the same pending reason from the scheduler. One
extra rule, shared by both: ``mps: "true"`` needs a fraction or gpu-memory request.

An annotation set to the empty string counts as absent (as in KAI's webhook). Called by
``kai.api.pod_info`` (the scheduler's model) and ``kai.admission.webhook``.
"""
from __future__ import annotations

import math
from typing import Mapping

from kai.api import constants as C


class GPUSharing:
    """A fractional GPU request from KAI's annotations. ``portion`` is per device."""

    __slots__ = ("portion", "memory_mib", "num_devices")

    def __init__(self, portion: float, memory_mib: int, num_devices: int) -> None:
        self.portion = portion
        self.memory_mib = memory_mib
        self.num_devices = num_devices

    def __repr__(self) -> str:
        return f"GPUSharing(portion={self.portion}, memory_mib={self.memory_mib}, devices={self.num_devices})"


def _text(v: object) -> str:
    return "" if v is None else str(v)


def _positive_int(s: str) -> int:
    try:
        v = int(s.strip())
    except ValueError:
        return 0
    return v if v > 0 else 0


def parse_gpu_sharing_annotations(annotations: Mapping[str, str],
                                  whole_gpus: bool) -> tuple[GPUSharing | None, str]:
    """``(request, "")`` for a valid GPU-sharing request, ``(None, "")`` for none, and
    ``(None, reason)`` for an invalid one. ``whole_gpus``: the pod also requests
    ``nvidia.com/gpu`` in some container (requests or limits)."""
    frac_s = _text(annotations.get(C.GPU_FRACTION)).strip()
    mem_s = _text(annotations.get(C.GPU_MEMORY)).strip()
    num_s = _text(annotations.get(C.GPU_FRACTION_NUM_DEVICES)).strip() or None
    if not frac_s and not mem_s:
        if num_s is not None:
            return None, ("cannot request multiple fractional devices without specifying fraction details "
                          "(portion or memory)")
        if _text(annotations.get(C.MPS)).strip().lower() == "true":
            return None, f"annotation {C.MPS}=true is only valid with {C.GPU_FRACTION} or {C.GPU_MEMORY}"
        return None, ""
    fraction = 0.0
    if frac_s:
        try:
            fraction = float(frac_s)
        except ValueError:
            fraction = math.nan
        if not (0.0 < fraction < 1.0):
            return None, f"{C.GPU_FRACTION} annotation value must be a positive number smaller than 1.0"
    memory = 0
    if mem_s:
        memory = _positive_int(mem_s)
        if not memory:
            return None, f"{C.GPU_MEMORY} annotation value must be a positive integer greater than 0"
    num = 1
    if num_s is not None:
        num = _positive_int(num_s)
        if not num:
            return None, "fraction count annotation value must be a positive integer greater than 0"
    if whole_gpus:
        return None, "cannot have both GPU fraction request and whole GPU resource request/limit"
    if frac_s and mem_s:
        return None, "cannot request both gpu-fraction and GPU memory request"
    return GPUSharing(fraction, memory, num), ""
