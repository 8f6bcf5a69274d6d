"""LeaderWorkerSet (leaderworkerset.x-k8s.io/v1), as KAI's LWS grouper.

One PodGroup per LWS group: ``pg-<lws>-<UID>-group-<i>`` (pod label
``leaderworkerset.sigs.k8s.io/group-index``). minMember is ``leaderWorkerTemplate.size``;
with ``startupPolicy: LeaderReady`` it is 1 while the leader (worker-index 0) is not yet
bound, then the size (the pod's ``leaderworkerset.sigs.k8s.io/size`` annotation).

SubGroups: ``leader`` (1) and ``workers`` (size - 1). With segments -- a segment size from
``leaderWorkerTemplate.subGroupPolicy.subGroupSize``, else annotation
``kai.scheduler/segment-size`` on the LWS, else on the worker template (> 1 and <= size) --
the pods are cut by worker index into ``segment-<k>`` SubGroups (the last may be smaller),
each with the segment topology constraint (``kai.scheduler/topology`` plus
``kai.scheduler/segment-topology-{required,preferred}-placement`` from the pod, the worker
template, or the LWS). Policy ``LeaderWorker`` (default) keeps the leader in segment-0, which
then holds ``leader`` and ``workers`` children (segment-0 is one pod larger when
``(size-1) % segment == 0``); ``LeaderExcluded`` puts the leader in its own top-level
``leader`` SubGroup and needs ``(size-1) % segment == 0``.

Two deviations, both where KAI's PodGroup could never be scheduled: while a LeaderReady
leader waits alone (minMember 1) KAI fails to group it when segments are configured
(segment size > 1 pod); kai groups the leader without segments, so the group can start. And
with a single segment of ``size - 1`` workers KAI counts the leader twice (segment-0 one
pod larger than the group); kai counts it once.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.podgrouper.defaults import Context, default_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata, SubGroupMetadata, Topology
from kai.podgrouper.objects import Obj
from kai.podgrouper.plugins.common import (SEGMENT_PREFERRED, SEGMENT_REQUIRED, SEGMENT_SIZE, nested_int,
                                           parse_int)

LEADER_READY, LEADER_CREATED = "LeaderReady", "LeaderCreated"
LEADER_WORKER, LEADER_EXCLUDED = "LeaderWorker", "LeaderExcluded"
LEADER, WORKERS = "leader", "workers"
SIZE_ANNOTATION = "leaderworkerset.sigs.k8s.io/size"
GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


def _where(lws: Obj) -> str:
    return f"LWS {lws.namespace}/{lws.name}"


def _is_leader(pod: Pod) -> bool:
    return pod.metadata.labels.get(WORKER_INDEX_LABEL) == "0"


def group_size(lws: Obj) -> int:
    size = nested_int(lws, "spec", "leaderWorkerTemplate", "size", where=_where(lws))
    if size is None:
        raise GroupingError(f"leaderWorkerTemplate.size not found in {_where(lws)}")
    if size <= 0:
        raise GroupingError(f"invalid leaderWorkerTemplate.size {size} in {_where(lws)}")
    return size


def leader_ready_min(pod: Pod, size: int) -> int:
    raw = pod.metadata.annotations.get(SIZE_ANNOTATION)
    if raw is not None:
        try:
            size = int(raw)
        except ValueError:
            pass
    if _is_leader(pod) and not pod.spec.node_name:
        return 1
    return size


def lws(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    size = group_size(top)
    policy = top.get("spec", "startupPolicy")
    policy = LEADER_CREATED if policy is None else policy
    if policy == LEADER_READY:
        meta.min_available = leader_ready_min(pod, size)
    elif policy == LEADER_CREATED:
        meta.min_available = size
    else:
        raise GroupingError(f"unknown startupPolicy: {policy}")
    meta.subgroups = build_subgroups(top, pod, meta.min_available)
    idx = pod.metadata.labels.get(GROUP_INDEX_LABEL)
    if idx is not None:
        try:
            meta.name = f"{meta.name}-group-{int(idx)}"
        except ValueError:
            pass
    return meta


# ------------------------------------------------------------------------------ segments
def segment_size(lws: Obj, replicas: int) -> int | None:
    where = _where(lws)
    size = nested_int(lws, "spec", "leaderWorkerTemplate", "subGroupPolicy", "subGroupSize", where=where)
    if size is None and SEGMENT_SIZE in lws.annotations:
        size = parse_int(lws.annotations[SEGMENT_SIZE], f"segment size annotation in {where}")
    if size is None:
        raw = lws.get("spec", "leaderWorkerTemplate", "workerTemplate", "metadata", "annotations", SEGMENT_SIZE)
        if isinstance(raw, str):
            size = parse_int(raw, f"segment size annotation in workerTemplate of {where}")
    if size is None:
        return None
    if size <= 1:
        raise GroupingError(f"segmentSize {size} is not valid. It must be greater than 1")
    if size > replicas:
        raise GroupingError(f"segmentSize {size} is greater than replicasSize {replicas}")
    return size


def _worker_annotation(pod: Pod, template: dict, key: str) -> str:
    v = pod.metadata.annotations.get(key, "")
    if v:
        return v
    ann = (template.get("metadata") or {}).get("annotations") if isinstance(template.get("metadata"), dict) else None
    v = ann.get(key) if isinstance(ann, dict) else None
    return v if isinstance(v, str) else ""


def segment_topology(pod: Pod, lws: Obj) -> Topology | None:
    template = lws.get("spec", "leaderWorkerTemplate", "workerTemplate")
    if not isinstance(template, dict):
        return None
    topology = pod.metadata.annotations.get(C.TOPOLOGY, "") or _worker_annotation(pod, template, C.TOPOLOGY) \
        or lws.annotations.get(C.TOPOLOGY, "")
    if not topology:
        return None
    required = _worker_annotation(pod, template, SEGMENT_REQUIRED)
    preferred = _worker_annotation(pod, template, SEGMENT_PREFERRED)
    if not required and not preferred:
        return None
    return Topology(topology=topology, required=required, preferred=preferred)


def _divisible(replicas: int, seg: int) -> bool:
    return (replicas - 1) % seg == 0


def segment_index(worker: int, replicas: int, seg: int) -> int:
    if worker == 0:
        return 0                        # the leader is always in the first segment
    return (worker - 1) // seg if _divisible(replicas, seg) else worker // seg


def build_subgroups(lws: Obj, pod: Pod, replicas: int) -> list[SubGroupMetadata]:
    seg = segment_size(lws, replicas) if replicas > 1 else None
    leader = _is_leader(pod)
    if seg is None:
        out = [SubGroupMetadata(LEADER, 1, pods=[pod.metadata.name] if leader else [])]
        if replicas - 1 > 0:
            out.append(SubGroupMetadata(WORKERS, replicas - 1, pods=[] if leader else [pod.metadata.name]))
        return out
    policy = lws.get("spec", "leaderWorkerTemplate", "subGroupPolicy", "subGroupPolicyType") or LEADER_WORKER
    topology = segment_topology(pod, lws)
    n = segment_index(replicas - 1, replicas, seg) + 1
    segments = [SubGroupMetadata(f"segment-{k}", seg, topology=topology) for k in range(n)]
    # the last segment may be short; the leader is counted here only when it is not the extra
    # pod of segment-0 (KAI counts it twice when there is a single segment of size - 1 workers)
    first = 1 if _divisible(replicas, seg) else 0
    segments[-1].min_available = sum(1 for w in range(first, replicas) if segment_index(w, replicas, seg) == n - 1)
    try:
        worker = int(pod.metadata.labels.get(WORKER_INDEX_LABEL, ""))
    except ValueError:
        raise GroupingError(f"failed to get worker index from pod {pod.metadata.namespace}/{pod.metadata.name}: "
                            f"label {WORKER_INDEX_LABEL} is missing or not an integer") from None
    pod_segment = segment_index(worker, replicas, seg)
    out = list(segments)
    placed = False
    if policy == LEADER_WORKER:
        first = segments[0]
        if _divisible(replicas, seg):
            first.min_available += 1
        out.append(SubGroupMetadata(LEADER, 1, parent=first.name, pods=[pod.metadata.name] if leader else []))
        in_workers = pod_segment == 0 and not leader
        out.append(SubGroupMetadata(WORKERS, first.min_available - 1, parent=first.name,
                                    pods=[pod.metadata.name] if in_workers else []))
        placed = leader or in_workers
    elif policy == LEADER_EXCLUDED:
        if not _divisible(replicas, seg):
            raise GroupingError(f"replicasSize {replicas} is not divisible by segmentSize {seg}. LeaderExcluded "
                                f"policy is only supported when replicasSize is divisible by segmentSize.")
        out.insert(0, SubGroupMetadata(LEADER, 1))
        if not leader:
            pod_segment += 1
    if not placed:
        out[pod_segment].pods.append(pod.metadata.name)
    return out
