"""kubeflow and ray: a job's leader pods go first in its task order (KAI's task-order plugins).

``kubeflow``: pods labelled ``training.kubeflow.org/job-role`` ``master`` or ``launcher``
before the others; ``ray``: pods labelled ``ray.io/node-type: head`` first. Each plugin adds
its rank in front of the session's task order, after the ranks added by plugins opened
before it (KAI chains task-order functions in plugin order; the first that tells two pods
apart decides), so with KAI's default plugin order the key is (kubeflow, ray, the task
order below them: ``kai.scheduler/task-priority``, age, name).
"""
from __future__ import annotations

from typing import Callable

from kai.api.pod_info import PodInfo
from kai.framework.plugin import Plugin, register_plugin

KUBEFLOW_ROLE_LABEL = "training.kubeflow.org/job-role"
KUBEFLOW_LEADER_ROLES = frozenset({"master", "launcher"})
RAY_ROLE_LABEL = "ray.io/node-type"
RAY_LEADER_ROLES = frozenset({"head"})


def leader_rank(label: str, roles: frozenset[str]) -> Callable[[PodInfo], int]:
    """0 for a pod whose ``label`` is one of ``roles``, else 1."""
    def rank(task: PodInfo) -> int:
        labels = task.pod.metadata.labels
        return 0 if labels and labels.get(label) in roles else 1
    return rank


def install_rank(ssn, rank: Callable[[PodInfo], int]) -> None:
    """Put ``rank`` in front of the session's task order, after earlier leader ranks."""
    current = ssn.task_order_key
    ranks = list(getattr(current, "leader_ranks", ())) + [rank]
    base = getattr(current, "below_leaders", current)

    def key(task: PodInfo) -> tuple:
        below = base(task)
        return tuple([r(task) for r in ranks]) + (below if isinstance(below, tuple) else (below,))
    key.leader_ranks = ranks            # type: ignore[attr-defined]
    key.below_leaders = base            # type: ignore[attr-defined]
    ssn.task_order_key = key


@register_plugin
class Kubeflow(Plugin):
    name = "kubeflow"

    def on_session_open(self, ssn) -> None:
        install_rank(ssn, leader_rank(KUBEFLOW_ROLE_LABEL, KUBEFLOW_LEADER_ROLES))


@register_plugin
class Ray(Plugin):
    name = "ray"

    def on_session_open(self, ssn) -> None:
        install_rank(ssn, leader_rank(RAY_ROLE_LABEL, RAY_LEADER_ROLES))
