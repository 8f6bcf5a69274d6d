"""Scheduling actions, one module each, run in the configured order every cycle."""
from kai.actions import allocate  # noqa: F401  (registers)
