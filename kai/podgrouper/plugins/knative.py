"""Knative Serving (serving.knative.dev/v1 Service), as KAI's knative grouper.

The pod's ``serving.knative.dev/revision`` label names its Revision. With gang scheduling on
(``--knative-gang-schedule``, the default) the Revision is one PodGroup
``pg-<revision>-<UID>``, minMember its ``autoscaling.knative.dev/min-scale`` annotation (1
when absent or not a number), priority from the Revision's labels or the pod (``inference``
by default). A Revision whose pods already run in PodGroups of their own (owned by the pods,
from before gang scheduling) keeps one PodGroup per pod, ``pg-<pod>-<UID>``, minMember 1,
priority ``inference`` -- as do all Knative pods when gang scheduling is off.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.podgrouper.defaults import (INFERENCE, Context, owner_priority, pod_owner_ref, podgroup_annotations,
                                     podgroup_labels, podgroup_name, podgroup_queue, owner_ref)
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata
from kai.podgrouper.objects import Obj

REVISION_LABEL = "serving.knative.dev/revision"
MIN_SCALE = "autoscaling.knative.dev/min-scale"


def knative(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    ns = pod.metadata.namespace or "default"
    rev_name = pod.metadata.labels.get(REVISION_LABEL)
    if rev_name is None:
        raise GroupingError(f"revisionName not found for knative service pod {ns}/{pod.metadata.name}")
    raw = ctx.get("serving.knative.dev/v1", "Revision", ns, rev_name)
    if raw is None:
        raise GroupingError(f'revisions.serving.knative.dev "{rev_name}" not found')
    rev = Obj(raw)
    if not ctx.config.knative_gang_schedule or _per_pod_revision(ctx, rev):
        return _from_pod(ctx, rev, pod)
    return _from_revision(ctx, rev, pod)


def _per_pod_revision(ctx: Context, rev: Obj) -> bool:
    """KAI's isBCRevision: the Revision's pods already sit in per-pod PodGroups."""
    groups: set[str] = set()
    for p in ctx.reader.list_pods(rev.namespace, {REVISION_LABEL: rev.name}):
        name = ((p.get("metadata") or {}).get("annotations") or {}).get(C.POD_GROUP_ANNOTATION)
        if name is None:
            continue
        if name in groups:
            return False            # two pods in one PodGroup: a gang-scheduled revision
        groups.add(name)
    if len(groups) > 1:
        return True
    if len(groups) == 1:
        pg_name = next(iter(groups))
        pg = ctx.get("scheduling.run.ai/v2alpha2", "PodGroup", rev.namespace, pg_name)
        if pg is None:
            return False
        refs = (pg.get("metadata") or {}).get("ownerReferences") or []
        if not refs:
            raise GroupingError(f"podgroup {pg_name} has no owner references")
        kind = refs[0].get("kind")
        if kind == rev.kind:
            return False
        if kind == "Pod":
            return True
        raise GroupingError(f"podgroup {pg_name} has unexpected owner reference: {refs[0]}")
    return False


def _from_revision(ctx: Context, rev: Obj, pod: Pod) -> PodGroupMetadata:
    try:
        minimum = int(rev.annotations.get(MIN_SCALE, "1"))
    except ValueError:
        minimum = 1
    return PodGroupMetadata(
        name=podgroup_name(rev), namespace=rev.namespace, owner=owner_ref(rev), queue=podgroup_queue(ctx, rev, pod),
        priority_class_name=owner_priority(ctx, rev, pod, INFERENCE), min_available=minimum,
        labels=podgroup_labels(rev, pod), annotations=podgroup_annotations(rev, pod))


def _from_pod(ctx: Context, rev: Obj, pod: Pod) -> PodGroupMetadata:
    return PodGroupMetadata(
        name=f"pg-{pod.metadata.name}-{pod.metadata.uid}", namespace=pod.metadata.namespace or "default",
        owner=pod_owner_ref(pod), queue=podgroup_queue(ctx, rev, pod), priority_class_name=INFERENCE,
        min_available=1, labels=podgroup_labels(rev, pod), annotations=podgroup_annotations(rev, pod))
