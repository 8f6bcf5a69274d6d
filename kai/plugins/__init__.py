"""Scheduler plugins, one module each, named as in KAI. ``build_plugins`` instantiates a config."""
from __future__ import annotations

import structlog

from kai.framework.plugin import PLUGINS, Plugin

from kai.plugins import elastic, minruntime, nodeplacement, predicates, priority, proportion  # noqa: F401  (register)
from kai.plugins import gpusharing  # noqa: F401  (register gpupack, gpuspread, gpusharingorder)
from kai.plugins import topology  # noqa: F401  (register)
from kai.plugins import leaders  # noqa: F401  (register kubeflow, ray)
from kai.plugins import podaffinity  # noqa: F401  (register)

log = structlog.get_logger("kai.plugins")


def build_plugins(config) -> list[Plugin]:
    """Instances of the configured plugins in config order; KAI names kai lacks are skipped."""
    out = []
    for pc in config.plugins:
        cls = PLUGINS.get(pc.name)
        if cls is None:
            log.debug("plugin not implemented by kai; ignored", plugin=pc.name)
            continue
        out.append(cls(pc.arguments))
    return out
