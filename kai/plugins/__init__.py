"""Scheduler plugins, one module each, named as in KAI. ``build_plugins`` instantiates a config."""
from __future__ import annotations

import structlog

from kai.framework.plugin import PLUGINS, Plugin

from kai.plugins import elastic, minruntime, nodeplacement, predicates, priority, proportion  # noqa: F401  (register)
from kai.plugins import gpusharing  # noqa: F401  (register gpupack, gpuspread, gpusharingorder)
from kai.plugins import topology  # noqa: F401  (register)
from kai.plugins import leaders  # noqa: F401  (register kubeflow, ray)
from kai.plugins import podaffinity  # noqa: F401  (register)
from kai.plugins import dynamicresources  # noqa: F401  (register)

log = structlog.get_logger("kai.plugins")

#: KAI plugins whose work kai does without a plugin of that name (always on)
BUILT_IN: dict[str, str] = {
    "nodeavailability": "the placement kernel's availability band (+100 when a node fits without waiting)",
    "resourcetype": "the placement kernel's resource-type band (+10 for a CPU-only pod on a GPU-less node)",
    "taskorder": "the default task order inside a PodGroup (kai.api.podgroup_info)",
    "subgrouporder": "the SubGroup walk of the allocate action",
    "nominatednode": "jobs pipelined by reclaim/preempt/consolidation go first in the next cycles",
}

#: KAI plugins kai does not implement yet: configuring one is reported, never silently dropped
NOT_IMPLEMENTED: dict[str, str] = {
    "snapshot": "the snapshot debug endpoint is not served",
    "reflectjoborder": "the job-order debug endpoint is not served",
}


def unimplemented(config) -> list[str]:
    """One warning per configured plugin kai neither implements nor does built in."""
    out = []
    for pc in config.plugins:
        if pc.name in PLUGINS or pc.name in BUILT_IN:
            continue
        why = NOT_IMPLEMENTED.get(pc.name, "kai has no such plugin")
        out.append(f"scheduler config plugin {pc.name!r} is not implemented by kai: {why}")
    return out


def build_plugins(config) -> list[Plugin]:
    """Instances of the configured plugins in config order. Names kai does built in or not at
    all have no instance; the latter are reported by ``unimplemented`` (kai simulate's
    warnings, kai scheduler's start-up log and Warning Event)."""
    return [PLUGINS[pc.name](pc.arguments) for pc in config.plugins if pc.name in PLUGINS]
