"""nodeplacement: binpack (default) or spread, per GPU and CPU, from arguments ``gpu`` / ``cpu``.

The scores themselves (KAI's 0..9 pack formula, free/capacity spread) are computed inside
the placement kernel; GPU tasks use the GPU strategy and CPU-only tasks the CPU strategy.
"""
from __future__ import annotations

from kai._fast.placement import STRATEGY_BINPACK, STRATEGY_SPREAD
from kai.framework.plugin import Plugin, register_plugin

_STRATEGIES = {"binpack": STRATEGY_BINPACK, "spread": STRATEGY_SPREAD}


@register_plugin
class NodePlacement(Plugin):
    name = "nodeplacement"

    def on_session_open(self, ssn) -> None:
        for kind in ("gpu", "cpu"):
            ssn.placement[kind] = _STRATEGIES.get(self.arguments.get(kind, "binpack"), STRATEGY_BINPACK)
