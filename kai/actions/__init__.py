"""Scheduling actions, one module each, run in the configured order every cycle."""
from kai.actions import allocate  # noqa: F401  (registers)
from kai.actions import consolidation, preempt, reclaim, stale_gang_eviction  # noqa: F401  (registers)
