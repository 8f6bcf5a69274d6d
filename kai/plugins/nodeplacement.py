"""nodeplacement: binpack (default), spread or fgd, per GPU and CPU, from arguments ``gpu`` / ``cpu``.

The scores themselves (KAI's 0..9 pack formula, free/capacity spread) are computed inside
the placement kernel; GPU tasks use the GPU strategy and CPU-only tasks the CPU strategy.
``fgd`` (beyond KAI: fragmentation gradient descent, see kai.plugins.fgd) scores nodes
through a NodeOrder callback in the same band.
"""
from __future__ import annotations

from kai._fast.placement import STRATEGY_BINPACK, STRATEGY_SPREAD
from kai.framework.plugin import Plugin, register_plugin
from kai.plugins import fgd

_STRATEGIES = {"binpack": STRATEGY_BINPACK, "spread": STRATEGY_SPREAD}


@register_plugin
class NodePlacement(Plugin):
    name = "nodeplacement"

    #: this session's FGD scorer when ``gpu`` or ``cpu`` is ``fgd``, else None
    fgd: fgd.FGD | None = None

    def on_session_open(self, ssn) -> None:
        self.fgd = None
        fgd_kinds = set()
        for kind in ("gpu", "cpu"):
            value = self.arguments.get(kind, "binpack")
            if value == "fgd":
                fgd_kinds.add(kind)
                value = "spread"        # the kernel's spread term; fgd's callback takes it back out
            ssn.placement[kind] = _STRATEGIES.get(value, STRATEGY_BINPACK)
        if fgd_kinds:
            self.fgd = fgd.attach(ssn, fgd_kinds, self.arguments)
