"""JobSet (jobset.x-k8s.io/v1alpha2), as KAI's jobset grouper.

``spec.startupPolicy.startupPolicyOrder`` absent or ``InOrder``: one PodGroup per
replicatedJob, ``pg-<jobset>-<UID>-<replicatedJob>`` (the pod's label
``jobset.sigs.k8s.io/replicatedjob-name``), minMember that job's size; any other order
(``AnyOrder``): one PodGroup ``pg-<jobset>-<UID>`` whose minMember is the sum of all sizes.
A replicatedJob's size is ``replicas`` (1 when absent or < 1) times ``parallelism`` (1 when
absent or < 1), the latter capped by ``completions`` when that is smaller; an unknown
replicatedJob, or none at all, counts 1. ``kai.scheduler/batch-min-member`` on the JobSet
overrides minMember (a later KAI release's option).
"""
from __future__ import annotations

from kai.api.k8s import Pod
from kai.podgrouper.defaults import Context, default_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata
from kai.podgrouper.objects import Obj
from kai.podgrouper.plugins.common import min_member_override, nested_int

REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
IN_ORDER = "InOrder"
_INT32_MAX = 2**31 - 1


def _size(top: Obj, rj: dict, name: str) -> int:
    where = f"JobSet {top.namespace}/{top.name} replicatedJob {name}"
    replicas = nested_int(rj, "replicas", where=where)
    replicas = replicas if replicas is not None and replicas > 0 else 1
    parallelism = nested_int(rj, "template", "spec", "parallelism", where=where)
    parallelism = parallelism if parallelism is not None and parallelism > 0 else 1
    completions = nested_int(rj, "template", "spec", "completions", where=where)
    if completions is not None and 0 < completions < parallelism:
        parallelism = completions
    n = replicas * parallelism
    if n > _INT32_MAX:
        raise GroupingError(f"minAvailable too large ({n}) for {where}: exceeds int32 max value")
    return max(n, 1)


def _replicated_jobs(top: Obj) -> list[dict]:
    rjs = top.get("spec", "replicatedJobs")
    if rjs is not None and not isinstance(rjs, list):
        raise GroupingError(f"JobSet {top.namespace}/{top.name}: spec.replicatedJobs must be a list")
    return [r for r in rjs or [] if isinstance(r, dict)]


def jobset(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    if not top.name or not top.uid:
        raise GroupingError(f"jobset top owner {top.namespace}/{top.name} missing name or UID")
    rjob = pod.metadata.labels.get(REPLICATED_JOB_LABEL, "")
    if not rjob:
        raise GroupingError(f"pod {pod.metadata.namespace}/{pod.metadata.name} missing required label "
                            f"{REPLICATED_JOB_LABEL!r}")
    order = top.get("spec", "startupPolicy", "startupPolicyOrder")
    if order is not None and not isinstance(order, str):
        raise GroupingError(f"JobSet {top.namespace}/{top.name}: spec.startupPolicy.startupPolicyOrder must be a string")
    rjs = _replicated_jobs(top)
    if order is None or order == IN_ORDER:
        meta.name = f"pg-{top.name}-{top.uid}-{rjob}"
        mine = next((r for r in rjs if r.get("name") == rjob), None)
        meta.min_available = _size(top, mine, rjob) if mine is not None else 1
    else:
        meta.name = f"pg-{top.name}-{top.uid}"
        total = sum(_size(top, r, str(r.get("name"))) for r in rjs if r.get("name"))
        if total > _INT32_MAX:
            raise GroupingError(f"total minAvailable too large ({total}) for JobSet {top.namespace}/{top.name}")
        meta.min_available = max(total, 1)
    override = min_member_override(top)
    if override is not None:
        meta.min_available = override
    return meta
