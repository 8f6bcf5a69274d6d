"""The look-alike key of a pending pod: everything a scheduling decision reads from it, encoded.

Equal keys mean interchangeable pods (``kai.actions.common.lookalike`` adds what the pods'
jobs must share). The key is made once per :class:`~kai.api.pod_info.PodInfo` (a changed pod
is a new PodInfo). The cluster state makes it when it files a pending pod of its scheduler
(``kai.cache.cluster_state``), while the pod's objects are still in cache from decoding, so
that a cycle only reads it; anything else asked for a key makes it on first use.
"""
from __future__ import annotations

import msgspec

from kai.api import constants as C
from kai.api.k8s import Pod

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


def _intern(key: bytes) -> bytes:
    got = _INTERN.get(key)
    if got is None:
        if len(_INTERN) >= _INTERN_MAX:
            _INTERN.clear()
        _INTERN[key] = got = key
    return got


def alike_key(task) -> bytes | tuple | None:
    """The key of ``task`` (a PodInfo), compared by equality: namespace, invalid reason, the
    whole spec, labels, annotations but the PodGroup's name, nominated node. None: never a
    look-alike (a pod that owns per-pod objects, has resource claim statuses, or is not a full
    Pod). Kept on the PodInfo (``alike_key`` is False until made), with its label-blind part
    (:func:`label_blind_key`). Dicts are encoded in their order, so equal dicts in another
    order give different keys: that errs towards "different"."""
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
        task.alike_key = task.alike_blind = None
        return None
    meta = pod.metadata
    ann = meta.annotations
    if ann and _GROUP in ann:
        ann = dict(ann)                 # (a copy and a delete: cheaper than filtering)
        del ann[_GROUP]
    blind = task.alike_blind = _intern(_encode((task.namespace, task.invalid_reason,
                                                status.nominated_node_name or "", ann, spec)))
    # with labels: (the shared label-blind part, the labels), not one joined copy of both --
    # a Job's pods each have labels of their own, and the spec may take kilobytes
    got = task.alike_key = (blind, _encode(meta.labels)) if meta.labels else blind
    return got


def label_blind_key(task) -> bytes | None:
    """``alike_key`` without the pod's labels: equal for pods that differ only in labels (a
    single-pod Job's ``job-name`` and ``controller-uid``). Only for answers that do not read
    the labels (``kai.framework.plugin.label_blind``)."""
    if task.alike_key is False:
        alike_key(task)
    return task.alike_blind
