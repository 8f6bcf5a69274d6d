"""Derive a PodGroup for a pod from its owners, with KAI's names, defaults and minMember.

``group_for_pod(pod, owners)`` returns the PodGroup manifest KAI's pod-grouper would create
or None when the pod names its PodGroup itself (annotation ``pod-group-name``). ``owners``
maps (kind, namespace, name) to owner manifests (dicts) when they are known; an owner only
known through an ownerReference still groups, with the kind's defaults.

The pod's controller ownerReferences are followed up to the top owner, whose kind picks the
rule (KAI's plugin hub):

================  ==========================================================================
top owner         PodGroup
================  ==========================================================================
(none)            ``pg-<pod>-<podUID>``, minMember 1, priority ``train``
Deployment        one per pod, ``pg-<pod>-<podUID>``, default priority ``inference``
Job               ``pg-<job>-<uid>``, minMember 1 or annotation ``kai.scheduler/batch-min-member``
CronJob           grouped by the pod's Job (``pg-<job>-<jobUID>``), minMember 1
StatefulSet       ``pg-<sts>-<uid>``, minMember 1, or annotation ``kai.scheduler/min-member``
                  when ``podManagementPolicy: Parallel``
JobSet            one for the JobSet, minMember sum(replicas x parallelism); with
                  ``startupPolicy.startupPolicyOrder: InOrder`` one per replicatedJob
                  (``pg-<js>-<uid>-<replicatedJob>``), minMember that job's replicas x parallelism
LeaderWorkerSet   one per group (``pg-<lws>-<uid>-group-<i>``), minMember ``size``
                  (``LeaderReady``: 1 while the leader is unscheduled)
PyTorchJob/TFJob  ``runPolicy.schedulingPolicy.minAvailable``, else (PyTorch) elasticPolicy
/MPIJob/...       minReplicas, else the sum of all replica specs
RayCluster/       1 head + per worker group replicas x numOfHosts (minReplicas when
RayJob/RayService autoscaling or set); label ``ray.io/priority-class-name`` sets the priority
Notebook          default priority ``build``
Workflow (Argo),  skipped: grouped by the owner below it (the pod itself when there is
TrainJob, ...     none), which inherits the skipped owner's labels and annotations
================  ==========================================================================

Queue: label ``kai.scheduler/queue`` on the top owner, then the pod; else label ``project``
(top owner, then pod; ``-<node-pool>`` appended when the pod has the node-pool label); else
``default-queue``. Priority: label ``priorityClassName`` on the top owner, then the pod, then
``pod.spec.priorityClassName``, then the kind's default. Preemptibility: label
``kai.scheduler/preemptibility`` on the top owner, then the pod. Topology: the top owner's
``kai.scheduler/topology*`` annotations (the pod's own when the owner has none).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kai.api import constants as C
from kai.api.k8s import ObjectMeta, OwnerReference, Pod, PodGroup, PodGroupSpec, TopologyConstraint

Owners = dict[tuple[str, str, str], dict[str, Any]]

MIN_MEMBER_OVERRIDE = "kai.scheduler/batch-min-member"
STS_MIN_MEMBER = "kai.scheduler/min-member"
RAY_PRIORITY_LABEL = "ray.io/priority-class-name"
JOBSET_RJOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_SIZE = "leaderworkerset.sigs.k8s.io/size"

# kind -> default priority class (KAI's per-type defaults); anything else -> train
DEFAULT_PRIORITY = {"Deployment": "inference", "Service": "inference", "Notebook": "build"}
# owners the "skip top owner" grouper looks through (Argo, Kubeflow Trainer, Run:ai, Dynamo)
SKIP_TOP_OWNER = {"Workflow", "TrainJob", "TrainingWorkload", "InteractiveWorkload", "DistributedWorkload",
                  "InferenceWorkload", "DistributedInferenceWorkload", "WorkloadRunner", "DynamoGraphDeployment"}
# Kubeflow training operators: kind -> replica-specs field
KUBEFLOW_SPECS = {"PyTorchJob": "pytorchReplicaSpecs", "TFJob": "tfReplicaSpecs", "MPIJob": "mpiReplicaSpecs",
                  "XGBoostJob": "xgbReplicaSpecs", "JAXJob": "jaxReplicaSpecs"}
RAY_KINDS = {"RayCluster", "RayJob", "RayService"}
_PREEMPTIBILITY = {"preemptible", "non-preemptible"}


@dataclass
class OwnerInfo:
    """One object in the pod's ownership chain (known manifest or only its reference)."""
    kind: str
    name: str
    uid: str
    api_version: str = ""
    obj: dict = field(default_factory=dict)

    @property
    def meta(self) -> dict:
        return self.obj.get("metadata", {}) or {}

    @property
    def labels(self) -> dict:
        return self.meta.get("labels", {}) or {}

    @property
    def annotations(self) -> dict:
        return self.meta.get("annotations", {}) or {}

    @property
    def spec(self) -> dict:
        return self.obj.get("spec", {}) or {}


def _pick(refs: list[OwnerReference]) -> OwnerReference | None:
    for ref in refs:
        if ref.controller:
            return ref
    return refs[0] if refs else None


def _refs(obj: dict) -> list[OwnerReference]:
    return [OwnerReference(api_version=r.get("apiVersion", ""), kind=r.get("kind", ""), name=r.get("name", ""),
                           uid=r.get("uid", ""), controller=r.get("controller"))
            for r in (obj.get("metadata", {}) or {}).get("ownerReferences", []) or []]


def owner_chain(pod: Pod, owners: Owners) -> list[OwnerInfo]:
    """The pod's owners, nearest first, top owner last (empty for a bare pod). The walk stops
    at an owner whose manifest is not known: it is the top owner as far as we can tell."""
    ns = pod.metadata.namespace or "default"
    chain: list[OwnerInfo] = []
    ref = _pick(pod.metadata.owner_references)
    while ref is not None and len(chain) < 16:
        obj = owners.get((ref.kind, ns, ref.name)) or {}
        meta = obj.get("metadata", {}) or {}
        chain.append(OwnerInfo(kind=ref.kind, name=ref.name, uid=ref.uid or meta.get("uid", "") or ref.name,
                               api_version=ref.api_version or obj.get("apiVersion", ""), obj=obj))
        if not obj:
            break
        ref = _pick(_refs(obj))
    return chain


def _pod_as_owner(pod: Pod) -> OwnerInfo:
    m = pod.metadata
    return OwnerInfo(kind="Pod", name=m.name, uid=m.uid or m.name, api_version="v1",
                     obj={"metadata": {"name": m.name, "labels": dict(m.labels), "annotations": dict(m.annotations)}})


def top_owner(pod: Pod, owners: Owners) -> tuple[str, str, str, dict]:
    """(kind, name, uid, manifest or {}) of the pod's top owner (the pod itself when bare)."""
    chain = owner_chain(pod, owners)
    top = chain[-1] if chain else _pod_as_owner(pod)
    return top.kind, top.name, top.uid, (top.obj if chain else {})


def _int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _inherit(lower: OwnerInfo, skipped: OwnerInfo) -> OwnerInfo:
    """``lower`` with the skipped owner's labels/annotations added where it lacks them."""
    obj = dict(lower.obj)
    meta = dict(obj.get("metadata", {}) or {})
    meta["labels"] = {**skipped.labels, **(meta.get("labels", {}) or {})}
    meta["annotations"] = {**skipped.annotations, **(meta.get("annotations", {}) or {})}
    obj["metadata"] = meta
    return OwnerInfo(lower.kind, lower.name, lower.uid, lower.api_version, obj)


@dataclass
class _Plan:
    """What a kind's rule decides: the owner the PodGroup belongs to, its name and gang size."""
    owner: OwnerInfo
    name: str
    min_member: int = 1
    default_priority: str = "train"
    priority: str = ""          # kind-specific override (Ray's label)


# ------------------------------------------------------------------------------ per-kind rules
def _job_min(owner: OwnerInfo) -> int:
    return max(1, _int(owner.annotations.get(MIN_MEMBER_OVERRIDE), 1))


def _statefulset_min(owner: OwnerInfo) -> int:
    if STS_MIN_MEMBER in owner.annotations and owner.spec.get("podManagementPolicy") == "Parallel":
        return max(1, _int(owner.annotations[STS_MIN_MEMBER], 1))
    return 1        # KAI refuses min-member without Parallel (OrderedReady would deadlock the gang)


def _jobset(owner: OwnerInfo, pod: Pod, base: str) -> tuple[str, int]:
    rjobs = [r for r in owner.spec.get("replicatedJobs", []) or [] if isinstance(r, dict)]

    def size(rj: dict) -> int:
        par = _int(((rj.get("template", {}) or {}).get("spec", {}) or {}).get("parallelism"), 1)
        return max(0, _int(rj.get("replicas"), 1)) * max(0, par)

    order = (owner.spec.get("startupPolicy", {}) or {}).get("startupPolicyOrder", "AnyOrder")
    override = owner.annotations.get(MIN_MEMBER_OVERRIDE)
    rjob_name = pod.metadata.labels.get(JOBSET_RJOB_LABEL, "")
    if order == "InOrder" and rjob_name:
        mine = next((r for r in rjobs if r.get("name") == rjob_name), None)
        minimum = _int(override, 0) or (size(mine) if mine else 1)
        return f"{base}-{rjob_name}", max(1, minimum)
    minimum = _int(override, 0) or sum(size(r) for r in rjobs)
    return base, max(1, minimum)


def _lws(owner: OwnerInfo, pod: Pod, base: str) -> tuple[str, int]:
    size = max(1, _int((owner.spec.get("leaderWorkerTemplate", {}) or {}).get("size"), 1))
    minimum = size
    if owner.spec.get("startupPolicy") == "LeaderReady":
        size = _int(pod.metadata.annotations.get(LWS_SIZE), size)
        leader = pod.metadata.labels.get(LWS_WORKER_INDEX) == "0"
        minimum = 1 if leader and not pod.spec.node_name else size
    idx = pod.metadata.labels.get(LWS_GROUP_INDEX)
    name = f"{base}-group-{int(idx)}" if idx is not None and str(idx).isdigit() else base
    return name, minimum


def _kubeflow(owner: OwnerInfo) -> int:
    spec = owner.spec
    policy = ((spec.get("runPolicy", {}) or {}).get("schedulingPolicy", {}) or spec.get("schedulingPolicy", {}) or {})
    if policy.get("minAvailable") is not None:
        return max(1, _int(policy["minAvailable"], 1))
    if owner.kind == "PyTorchJob" and (spec.get("elasticPolicy", {}) or {}).get("minReplicas") is not None:
        return max(1, _int(spec["elasticPolicy"]["minReplicas"], 1))
    specs = spec.get(KUBEFLOW_SPECS[owner.kind], {}) or {}
    return max(1, sum(_int((r or {}).get("replicas"), 1) for r in specs.values()))


def _ray_min(cluster_spec: dict) -> int:
    """1 head + each worker group's replicas x numOfHosts (minReplicas when autoscaling or set)."""
    total = 1
    autoscaling = bool(cluster_spec.get("enableInTreeAutoscaling"))
    for group in cluster_spec.get("workerGroupSpecs", []) or []:
        if not isinstance(group, dict) or group.get("suspended"):
            continue
        replicas, lo = _int(group.get("replicas"), 0), _int(group.get("minReplicas"), 0)
        if replicas == 0 and lo == 0:
            continue
        hosts = _int(group.get("numOfHosts"), 1)
        total += (lo if autoscaling or lo > 0 else replicas) * hosts
    return total


def _ray_cluster_spec(chain: list[OwnerInfo], owner: OwnerInfo, owners: Owners, ns: str) -> dict:
    if owner.kind == "RayCluster":
        return owner.spec
    status = owner.obj.get("status", {}) or {}
    names = [status.get("rayClusterName"),
             (status.get("activeServiceStatus", {}) or {}).get("rayClusterName"),
             (status.get("pendingServiceStatus", {}) or {}).get("rayClusterName")]
    for n in names:
        if n and ("RayCluster", ns, n) in owners:
            return (owners[("RayCluster", ns, n)].get("spec", {}) or {})
    cluster = next((o for o in chain if o.kind == "RayCluster" and o.obj), None)
    if cluster is not None:
        return cluster.spec
    return owner.spec.get("rayClusterSpec") or owner.spec.get("rayClusterConfig") or {}


def _plan(pod: Pod, chain: list[OwnerInfo], owners: Owners) -> _Plan:
    ns = pod.metadata.namespace or "default"
    if not chain:
        me = _pod_as_owner(pod)
        return _Plan(me, f"pg-{me.name}-{me.uid}")
    top = chain[-1]
    if top.kind in SKIP_TOP_OWNER:
        lower = _inherit(chain[-2] if len(chain) > 1 else _pod_as_owner(pod), top)
        rest = chain[:-2] + [lower] if len(chain) > 1 else []
        if not rest:        # the pod itself is grouped, with the skipped owner's metadata
            return _Plan(lower, f"pg-{lower.name}-{lower.uid}")
        return _plan(pod, rest, owners)
    base = f"pg-{top.name}-{top.uid}"
    kind = top.kind
    if kind == "Deployment":
        me = _pod_as_owner(pod)
        return _Plan(me, f"pg-{me.name}-{me.uid}", default_priority="inference")
    if kind == "Job":
        return _Plan(top, base, _job_min(top))
    if kind == "CronJob":
        job = next((o for o in chain if o.kind == "Job"), None)
        if job is not None:
            return _Plan(job, f"pg-{job.name}-{job.uid}")
        return _Plan(top, base)
    if kind == "StatefulSet":
        return _Plan(top, base, _statefulset_min(top))
    if kind == "JobSet":
        name, minimum = _jobset(top, pod, base)
        return _Plan(top, name, minimum)
    if kind == "LeaderWorkerSet":
        name, minimum = _lws(top, pod, base)
        return _Plan(top, name, minimum)
    if kind in KUBEFLOW_SPECS:
        return _Plan(top, base, _kubeflow(top) if top.obj else 1)
    if kind in RAY_KINDS:
        cluster = _ray_cluster_spec(chain, top, owners, ns)
        return _Plan(top, base, _ray_min(cluster) if (cluster or top.obj) else 1,
                     priority=top.labels.get(RAY_PRIORITY_LABEL, ""))
    return _Plan(top, base, default_priority=DEFAULT_PRIORITY.get(kind, "train"))


# ------------------------------------------------------------------------------ shared metadata
def _queue(owner: OwnerInfo, pod: Pod) -> str:
    ol, pl = owner.labels, pod.metadata.labels
    if ol.get(C.QUEUE_LABEL):
        return ol[C.QUEUE_LABEL]
    if pl.get(C.QUEUE_LABEL):
        return pl[C.QUEUE_LABEL]
    project = ol.get(C.LEGACY_QUEUE_LABEL) or pl.get(C.LEGACY_QUEUE_LABEL) or ""
    if project:
        pool = pl.get(C.NODE_POOL_LABEL)
        return f"{project}-{pool}" if pool else project
    return C.DEFAULT_QUEUE


def _priority(owner: OwnerInfo, pod: Pod, default: str) -> str:
    return (owner.labels.get(C.PRIORITY_CLASS_LABEL) or pod.metadata.labels.get(C.PRIORITY_CLASS_LABEL)
            or pod.spec.priority_class_name or default)


def _preemptibility(owner: OwnerInfo, pod: Pod) -> str:
    for labels in (owner.labels, pod.metadata.labels):
        v = labels.get(C.PREEMPTIBILITY_LABEL)
        if v in _PREEMPTIBILITY:
            return v
    return ""


def _topology_constraint(pod: Pod, owner: OwnerInfo) -> TopologyConstraint | None:
    """The owner's ``kai.scheduler/topology*`` annotations (the pod's own when the owner is
    unknown or lacks them) as the PodGroup's topologyConstraint."""
    ann = {**pod.metadata.annotations, **owner.annotations}
    topology = ann.get(C.TOPOLOGY, "")
    required = ann.get(C.TOPOLOGY_REQUIRED, "")
    preferred = ann.get(C.TOPOLOGY_PREFERRED, "")
    if not topology and not required and not preferred:
        return None
    return TopologyConstraint(topology=str(topology), required_topology_level=str(required),
                              preferred_topology_level=str(preferred))


def group_owner(pod: Pod, owners: Owners | None = None) -> OwnerInfo:
    """The object the pod's PodGroup belongs to (its ownerReference): the top owner, the pod
    for Deployments and bare pods, the Job for CronJobs, the owner below a skipped one."""
    owners = owners or {}
    return _plan(pod, owner_chain(pod, owners), owners).owner


def group_for_pod(pod: Pod, owners: Owners | None = None) -> PodGroup | None:
    """The PodGroup KAI's pod-grouper would make for ``pod``; None if the pod names its own."""
    if C.POD_GROUP_ANNOTATION in pod.metadata.annotations:
        return None
    owners = owners or {}
    chain = owner_chain(pod, owners)
    plan = _plan(pod, chain, owners)
    # the top owner (after skipping) carries queue/priority/topology; for per-pod and CronJob
    # groups KAI still reads them from the owner it groups by
    src = plan.owner if plan.owner.kind != "Pod" or not chain else _source_for_pod_group(chain, pod)
    queue = _queue(src, pod)
    priority = plan.priority or _priority(src, pod, plan.default_priority)
    labels = {k: v for k, v in src.labels.items() if isinstance(v, str)} if src.kind != "Pod" else {}
    labels[C.QUEUE_LABEL] = queue
    o = plan.owner
    ref = [OwnerReference(api_version=o.api_version, kind=o.kind, name=o.name, uid=o.uid)] \
        if o.api_version and o.uid else []
    return PodGroup(
        metadata=ObjectMeta(name=plan.name, namespace=pod.metadata.namespace or "default",
                            uid=f"{plan.name}-uid", creation_timestamp=pod.metadata.creation_timestamp,
                            labels=labels, owner_references=ref),
        spec=PodGroupSpec(min_member=plan.min_member, queue=queue, priority_class_name=priority,
                          preemptibility=_preemptibility(src, pod),
                          topology_constraint=_topology_constraint(pod, src)),
    )


def _source_for_pod_group(chain: list[OwnerInfo], pod: Pod) -> OwnerInfo:
    """For per-pod groups (Deployment) the labels come from the top owner (after skipping)."""
    top = chain[-1]
    if top.kind in SKIP_TOP_OWNER:
        return _inherit(chain[-2], top) if len(chain) > 1 else _inherit(_pod_as_owner(pod), top)
    return top
