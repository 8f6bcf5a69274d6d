"""Action base class and registry (allocate, consolidation, reclaim, preempt, stalegangeviction)."""
from __future__ import annotations


class Action:
    name = ""

    def execute(self, ssn) -> None:  # pragma: no cover - interface
        raise NotImplementedError


ACTIONS: dict[str, type[Action]] = {}


def register_action(cls):
    ACTIONS[cls.name] = cls
    return cls
