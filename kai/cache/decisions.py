"""A cycle's decisions and the offline commit sink.

``Statement.commit`` hands each surviving operation to a *cache* (``bind``, ``pipeline``,
``evict``). Two caches exist: :class:`RecordingCache` here (``kai simulate`` and the tests:
decisions are recorded and applied to the ClusterState as assumed) and
``kai.cache.binder.LiveCache`` (the live controller: the same, plus API calls). Both fill a
:class:`CycleResult`, which the scheduler completes with the cycle's unschedulable reasons and
queue figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import msgspec

from kai.cache.cluster_state import ClusterState


class Decision(msgspec.Struct, gc=False):
    """One binding, pipeline or eviction: pod key ``ns/name``, node, shared-GPU groups (the
    shared empty tuple for a pod without any).

    A cycle makes one per placed pod, so it is a struct the cyclic garbage collector does not
    track (it holds strings and a list of strings, never a cycle): the collection after a
    cycle of 20,000 bindings does not walk 40,000 more objects."""
    pod: str
    node: str = ""
    gpu_groups: Sequence[str] = ()
    action: str = ""
    preemptor: str = ""


@dataclass
class CycleResult:
    bindings: list[Decision] = field(default_factory=list)
    evictions: list[Decision] = field(default_factory=list)
    pipelined: list[Decision] = field(default_factory=list)
    unschedulable: dict[str, list[str]] = field(default_factory=dict)
    queues: list[dict] = field(default_factory=list)
    #: per usable queue: {"allocated", "allocatedNonPreemptible", "requested", "deserved"} as
    #: (gpu devices, cpu millicores, memory bytes) after the cycle's commits (the status writer's input)
    queue_usage: dict[str, dict[str, tuple]] = field(default_factory=dict)
    queue_problems: dict[str, str] = field(default_factory=dict)   # queue -> why it is left out
    duration: float = 0.0                  # seconds, the whole cycle (open, actions, close)
    open_seconds: float = 0.0              # opening the session (plugins' on_session_open)
    close_seconds: float = 0.0
    action_seconds: dict[str, float] = field(default_factory=dict)   # per action, in run order


class RecordingCache:
    """Commit sink that records decisions and applies them to the ClusterState as assumed."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.result = CycleResult()

    def bind(self, task, node_name: str) -> None:
        self.state.assume_bound(task, node_name)
        self.result.bindings.append(Decision(task.key, node_name, list(task.gpu_groups) if task.gpu_groups else ()))

    def pipeline(self, task, node_name: str) -> None:
        self.result.pipelined.append(Decision(task.key, node_name))

    def evict(self, task, action: str, preemptor: str = "") -> None:
        self.state.assume_evicted(task)
        self.result.evictions.append(Decision(task.key, task.node_name, action=action, preemptor=preemptor))
