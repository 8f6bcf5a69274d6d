"""Action base class and registry (allocate, consolidation, reclaim, preempt, stalegangeviction)."""
from __future__ import annotations

import contextlib
import gc


class Action:
    name = ""

    def execute(self, ssn) -> None:  # pragma: no cover - interface
        raise NotImplementedError


ACTIONS: dict[str, type[Action]] = {}


def register_action(cls):
    ACTIONS[cls.name] = cls
    return cls


@contextlib.contextmanager
def cyclic_gc_paused():
    """Pause Python's cyclic garbage collector for a block (a no-op when already paused).

    A scheduling cycle allocates many small objects that reference counting frees; left on,
    the collector would start a collection every few hundred allocations, and each
    full one rescans every long-lived object of the cluster state (0.2 s with 100,000
    pending jobs). Paused, the block's cyclic garbage waits for the next collection after it.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
