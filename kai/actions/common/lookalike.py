"""Look-alike jobs: two pending single-pod jobs that every action answers the same way.

Reclaim and preempt walk every pending job, as KAI's do, and in a backlog held back by quota
or limits most of those jobs are copies of the one before them (a Deployment's, a sweep's or
an inference service's pods), each asking the same question of an unchanged session and
getting the same "no". :func:`look_alike` says when a job is such a copy, so that
``JobsOrderByQueues.skip_alike`` can pass over the run of copies after a job that placed
nothing, exactly as if each had been popped and refused.

Two jobs look alike when both are single-pod jobs (``PodGroupInfo.lone_task``) whose pod is
pending, of the same queue, priority, priority class, preemptibility and minimum, and their
pods agree on everything a scheduling decision reads: namespace, labels (inter-pod affinity
and spread count them), annotations (GPU sharing and the like) apart from the name of the
pod's own PodGroup (each job's differs; it only ties the pod to its job), the whole spec and
the nominated node. Pods that own per-pod objects are never look-alikes, because those objects can differ
while the specs are equal: DRA claims made from a template (``resourceClaims``) and generic
ephemeral volumes (a PVC per pod). A false "alike" would skip a job that could have been
placed, so every test here errs towards "different".
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.alike_key import alike_key

_PENDING = C.PodStatus.PENDING


def look_alike(a, b) -> bool:
    """True when ``b`` would get exactly ``a``'s answer from an action in the same session
    state (both pending single-pod jobs with interchangeable pods; see the module docstring)."""
    if (a.queue != b.queue or a.priority != b.priority or a.preemptible != b.preemptible
            or a.min_member != b.min_member or a.priority_class != b.priority_class
            or a.scheduling_backoff != b.scheduling_backoff):
        return False
    ta, tb = a.lone_task(), b.lone_task()
    if ta is None or tb is None or ta.status != _PENDING or tb.status != _PENDING:
        return False
    key = alike_key(ta)
    return key is not None and key == alike_key(tb)


#: look-alike jobs share their init request (their one pending pod's request, GPU sharing and
#: quota figures: equal specs and annotations, no DRA claims), so a job view that reads only
#: the init request needs no comparison between them (JobsOrderByQueues.skip_alike)
look_alike.equal_init_requests = True

__all__ = ["alike_key", "look_alike"]
