"""Groupers for built-in and single-template workloads (KAI's job, cronjobs, deployment,
podjob/spark, notebook, spotrequest, aml and runaijob plugins).

==============  ===========================================================================
top owner       PodGroup
==============  ===========================================================================
batch Job       one per pod: ``pg-<pod>-<job UID>``, minMember 1 (KAI v0.13). With
                ``kai.scheduler/batch-min-member: N`` on the Job: one for the Job,
                ``pg-<job>-<UID>``, minMember N (the gang option of later KAI releases).
                A PodGroup of the legacy name ``pg-<job>-<UID>`` (Jobs with parallelism <= 1)
                that already exists is kept (``--search-legacy-pg``).
CronJob         the pod's Job as top owner, default fields (``pg-<job>-<job UID>``)
Deployment      one per pod, ``pg-<pod>-<pod UID>``, owned by the pod, priority ``inference``
bare Pod        ``pg-<pod>-<pod UID>``; a Spark pod (labels ``spark-app-name`` and
                ``spark-app-selector``) joins ``<spark-app-selector>``
Notebook        default fields, priority ``build``
SPOTRequest     default fields, priority ``inference``
AmlJob          minMember ``spec.job.options.envs.AZUREML_NODE_COUNT``
RunaiJob        ``pg-<pod name without its last -suffix>-<UID>``
StatefulSet     default fields; ``kai.scheduler/min-member: N`` with ``podManagementPolicy:
                Parallel`` gangs N pods (a later KAI release's option; an error otherwise)
==============  ===========================================================================
"""
from __future__ import annotations

from kai.api.k8s import Pod
from kai.podgrouper.defaults import (BUILD, INFERENCE, Context, default_metadata, owner_priority,
                                     pod_owner_ref)
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata
from kai.podgrouper.objects import Obj
from kai.podgrouper.plugins.common import min_member_override, nested_int, parse_int

STS_MIN_MEMBER = "kai.scheduler/min-member"
SPARK_APP_LABEL = "spark-app-name"
SPARK_SELECTOR_LABEL = "spark-app-selector"


def _legacy_podgroup_exists(ctx: Context, namespace: str, name: str) -> bool:
    return ctx.get("scheduling.run.ai/v2alpha2", "PodGroup", namespace, name) is not None


def batch_job(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    ns = pod.metadata.namespace or "default"
    per_pod = f"pg-{pod.metadata.name}-{top.uid}"
    gang = min_member_override(top)
    if gang is not None:
        # one PodGroup for the Job; a running pod keeps its per-pod PodGroup from before
        if ctx.config.search_legacy_podgroups and per_pod != meta.name and _legacy_podgroup_exists(ctx, ns, per_pod):
            meta.name = per_pod
            return meta
        meta.min_available = gang
        return meta
    name = per_pod
    if ctx.config.search_legacy_podgroups:
        parallelism = nested_int(top, "spec", "parallelism", where=repr(top))
        legacy = per_pod if parallelism is not None and parallelism > 1 else f"pg-{top.name}-{top.uid}"
        if legacy != name and _legacy_podgroup_exists(ctx, ns, legacy):
            name = legacy
    meta.name = name
    return meta


def cronjob(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    ref = next((r for r in pod.metadata.owner_references if r.kind == "Job"), None)
    if ref is None:
        raise GroupingError("no owner reference of type 'Job'")
    ns = pod.metadata.namespace or "default"
    raw = ctx.get("batch/v1", "Job", ns, ref.name)
    if raw is None:
        raise GroupingError(f'jobs.batch "{ref.name}" not found')
    job = Obj(raw)
    if not job.uid and ref.uid:
        job = Obj({**raw, "metadata": {**job.meta, "uid": ref.uid}})
    if not job.api_version:
        job = Obj({**job.raw, "apiVersion": "batch/v1", "kind": "Job"})
    return default_metadata(ctx, job, pod)


def deployment(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    meta.owner = pod_owner_ref(pod)
    meta.priority_class_name = owner_priority(ctx, top, pod, INFERENCE)
    meta.name = f"pg-{pod.metadata.name}-{pod.metadata.uid}"
    return meta


def is_spark_pod(pod: Pod) -> bool:
    labels = pod.metadata.labels
    return SPARK_APP_LABEL in labels and SPARK_SELECTOR_LABEL in labels


def pod_job(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod, owners)
    if is_spark_pod(pod):
        meta.name = pod.metadata.labels[SPARK_SELECTOR_LABEL]
    return meta


def notebook(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    meta.priority_class_name = owner_priority(ctx, top, pod, BUILD)
    return meta


def spot_request(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    meta.priority_class_name = owner_priority(ctx, top, pod, INFERENCE)
    return meta


def aml_job(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    try:
        n = nested_int(top, "spec", "job", "options", "envs", "AZUREML_NODE_COUNT", where=repr(top))
    except GroupingError:
        n = None
    if n is None:
        raise GroupingError("azureml envs count not found in spec")
    meta.min_available = n
    return meta


def runai_job(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    ns = pod.metadata.namespace or "default"
    if ctx.config.search_legacy_podgroups:
        parallelism = nested_int(top, "spec", "parallelism", where=repr(top))
        base = pod.metadata.name if parallelism is not None and parallelism > 1 else top.name
        legacy = f"pg-{base}-{top.uid}"
        if _legacy_podgroup_exists(ctx, ns, legacy):
            meta.name = legacy
            return meta
    base = pod.metadata.name
    if "-" in base:
        base = base[:base.rindex("-")]
    meta.name = f"pg-{base}-{top.uid}"
    return meta


def statefulset(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    """Default fields; ``kai.scheduler/min-member: N`` gangs N pods (a later KAI release's
    option), only with ``podManagementPolicy: Parallel`` (OrderedReady creates the pods one
    by one and would never complete the gang: an error)."""
    meta = default_metadata(ctx, top, pod, owners)
    raw = top.annotations.get(STS_MIN_MEMBER)
    if raw is None:
        return meta
    policy = top.get("spec", "podManagementPolicy") or ""
    if policy != "Parallel":
        raise GroupingError(f"{STS_MIN_MEMBER} annotation requires podManagementPolicy: Parallel on StatefulSet "
                            f"{top.namespace}/{top.name} (current policy {policy or 'OrderedReady (default)'!r} "
                            f"creates pods sequentially, which deadlocks gang scheduling)")
    n = parse_int(raw, f"{STS_MIN_MEMBER} annotation on StatefulSet {top.namespace}/{top.name}")
    if n < 1:
        raise GroupingError(f"invalid {STS_MIN_MEMBER} annotation on StatefulSet {top.namespace}/{top.name}: "
                            f"{raw!r} must be a positive integer")
    meta.min_available = n
    return meta


def default(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    """Kinds without their own rule (StatefulSet, ReplicaSet, Tekton runs, KFP schedules, ...)."""
    return default_metadata(ctx, top, pod, owners)
