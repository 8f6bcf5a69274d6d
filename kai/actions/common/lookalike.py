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

import msgspec

from kai.api import constants as C
from kai.api.k8s import Pod

_PENDING = C.PodStatus.PENDING
_GROUP = C.POD_GROUP_ANNOTATION
_encode = msgspec.json.Encoder().encode
#: equal keys share one bytes object (memory only: keys are compared by value); bounded,
#: forgotten whole when full
_INTERN: dict[bytes, bytes] = {}
_INTERN_MAX = 4096          # x a key of a few KB: a few MB at most


def _owns_per_pod_objects(spec) -> bool:
    if spec.resource_claims:
        return True
    return any(v.ephemeral is not None for v in spec.volumes)


def alike_key(task) -> bytes | None:
    """Everything a decision reads from a pending pod, as bytes: equal keys mean
    interchangeable pods (namespace, invalid reason, the whole spec, labels, annotations but
    the PodGroup's name, nominated node). None: never a look-alike (a pod that owns per-pod
    objects, has resource claim statuses, or is not a full Pod). Computed once per PodInfo (a
    changed pod is a new PodInfo). Dicts are encoded in their order, so equal dicts in
    another order give different keys: that errs towards "different"."""
    key = task.alike_key
    if key is not False:
        return key
    pod = task.pod
    if pod.__class__ is Pod:                # (the common case: plain attribute reads)
        spec, status = pod.spec, pod.status
        claimed = status.resource_claim_statuses
    else:
        spec = getattr(pod, "spec", None)
        status = getattr(pod, "status", None)
        claimed = getattr(status, "resource_claim_statuses", None)
    if (spec is None or status is None or claimed
            or ((spec.resource_claims or spec.volumes) and _owns_per_pod_objects(spec))):
        task.alike_key = None
        return None
    meta = pod.metadata
    ann = meta.annotations
    if ann and _GROUP in ann:
        ann = dict(ann)                 # (a copy and a delete: cheaper than filtering)
        del ann[_GROUP]
    key = _encode((task.namespace, task.invalid_reason, status.nominated_node_name or "", meta.labels, ann, spec))
    got = _INTERN.get(key)
    if got is None:
        if len(_INTERN) >= _INTERN_MAX:
            _INTERN.clear()
        _INTERN[key] = got = key
    task.alike_key = got
    return got


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
