"""Plugin base class and registry. Plugins only register callbacks when a session opens."""
from __future__ import annotations

from typing import Callable


class Plugin:
    """A scheduler plugin. ``arguments`` are the strings from the config's ``tiers[].plugins[]``."""

    name = ""

    def __init__(self, arguments: dict[str, str] | None = None) -> None:
        self.arguments = dict(arguments or {})

    def on_session_open(self, ssn) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def on_session_close(self, ssn) -> None:
        pass


PLUGINS: dict[str, Callable[[dict], Plugin]] = {}


def alike_stable(hook):
    """Declare the look-alike contract on a plugin hook (a pre-predicate, node mask, NodeOrder
    or SubsetNodes fn; a class for callable instances) and return it.

    The contract: for a single-pod job (``PodGroupInfo.lone_task``) whose pod is pending, the
    hook's answer depends only on what look-alike jobs share (kai.actions.common.lookalike: the
    pod's namespace, labels, annotations but its PodGroup's name, whole spec and nominated node;
    the job's queue, priority, priority class, preemptibility, minimum and backoff) and on
    session state that no placement, eviction or undo in the session changes. Allocate may then
    take one job's answer for every look-alike job of the session
    (kai.actions.common.lone_answers). A hook without the declaration is asked for every job.
    """
    hook.alike_stable = True
    return hook


def label_blind(hook):
    """Declare, on a hook that keeps the look-alike contract (:func:`alike_stable`), that its
    answer does not read the pod's labels while no pod carries inter-pod terms (the session's
    ``predicate_epoch()`` is ``(0, 0)``): pods that differ only in labels then get the same
    answer. Single-pod Jobs are such pods: each carries its own ``job-name`` and
    ``controller-uid``. Allocate keys its kept answers without labels while every registered
    hook declares this (kai.actions.common.lone_answers); a hook without it keeps the labels
    in the key."""
    hook.label_blind = True
    return hook


def register_plugin(cls):
    PLUGINS[cls.name] = cls
    return cls
