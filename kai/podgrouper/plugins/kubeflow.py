"""Kubeflow training jobs (kubeflow.org): TFJob, PyTorchJob, XGBoostJob, JAXJob, MPIJob v1 and
v2beta1, as KAI's kubeflow groupers.

minMember is ``spec.runPolicy.schedulingPolicy.minAvailable`` when set, else the sum of the
replica specs' ``replicas`` (every spec needs replicas > 0; MPIJob needs ``Launcher`` and
``Worker`` specs, XGBoostJob ``Master`` and ``Worker``, JAXJob ``Worker``). PyTorchJob takes
``spec.elasticPolicy.minReplicas`` over the sum and ``minAvailable`` over both. MPIJob with
``launcherCreationPolicy: WaitForWorkersReady`` leaves the launchers out until a launcher
pod exists.

PyTorchJob SubGroups: ``master`` (its replicas) and ``worker`` (minMember minus the
masters); with ``kai.scheduler/segment-size`` (pod annotation, else the Worker template's)
``worker`` is the parent of ``worker-<k>`` segments cut by the pod's
``training.kubeflow.org/replica-index``, each with the segment topology constraint. Pods are
placed by their ``training.kubeflow.org/replica-type`` label.
"""
from __future__ import annotations

from kai.api import constants as C
from kai.api.k8s import Pod
from kai.podgrouper.defaults import Context, default_metadata
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata, SubGroupMetadata, Topology
from kai.podgrouper.objects import Obj
from kai.podgrouper.plugins.common import (SEGMENT_PREFERRED, SEGMENT_REQUIRED, SEGMENT_SIZE, nested_int,
                                           parse_int, template_annotations)

REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"

SPEC_FIELDS = {"TFJob": ("tfReplicaSpecs", ()), "PyTorchJob": ("pytorchReplicaSpecs", ()),
               "XGBoostJob": ("xgbReplicaSpecs", ("Master", "Worker")), "JAXJob": ("jaxReplicaSpecs", ("Worker",)),
               "MPIJob": ("mpiReplicaSpecs", ("Launcher", "Worker"))}


def _min_available(top: Obj) -> int | None:
    return nested_int(top, "spec", "runPolicy", "schedulingPolicy", "minAvailable", where=repr(top))


def total_replicas(top: Obj, field: str, mandatory: tuple[str, ...]) -> int:
    specs = top.get("spec", field)
    if not isinstance(specs, dict):
        raise GroupingError(f"the type of the job {top.name} doesn't have a {field} field. Please fix the replica field")
    for name in mandatory:
        if name not in specs:
            raise GroupingError(f"the type of the job {top.name} doesn't have a {name} replica spec which is required. "
                                f"Please fix the replica field")
    total = 0
    for name in specs:
        replicas = nested_int(specs, name, "replicas", where=f"{top!r} {field}.{name}")
        if not replicas:
            raise GroupingError(f"the type of the job {top.name} doesn't allow for 0 {name} pods. "
                                f"Please fix the replica field")
        total += replicas
    if total <= 0:
        raise GroupingError(f"the type of the job {top.name} doesn't allow for {total} pods. Please fix the replica field")
    return total


def distributed(ctx: Context, top: Obj, pod: Pod, field: str, mandatory: tuple[str, ...]) -> PodGroupMetadata:
    meta = default_metadata(ctx, top, pod)
    minimum = _min_available(top)
    meta.min_available = minimum if minimum is not None else total_replicas(top, field, mandatory)
    return meta


def tfjob(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    return distributed(ctx, top, pod, *SPEC_FIELDS["TFJob"])


def xgboostjob(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    return distributed(ctx, top, pod, *SPEC_FIELDS["XGBoostJob"])


def jaxjob(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    return distributed(ctx, top, pod, *SPEC_FIELDS["JAXJob"])


def mpijob(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = distributed(ctx, top, pod, *SPEC_FIELDS["MPIJob"])
    if top.get("spec", "launcherCreationPolicy") == "WaitForWorkersReady":
        pods = ctx.reader.list_pods(top.namespace or pod.metadata.namespace or "default",
                                    {JOB_NAME_LABEL: top.name, JOB_ROLE_LABEL: "launcher"})
        if not any(not (p.get("metadata") or {}).get("deletionTimestamp") for p in pods):
            launchers = nested_int(top, "spec", "mpiReplicaSpecs", "Launcher", "replicas", where=repr(top))
            if not launchers:
                raise GroupingError(f"the type of the job {top.name} doesn't allow for 0 mpiReplicaSpecs pods. "
                                    f"Please fix the replica field")
            meta.min_available -= launchers
    return meta


# ------------------------------------------------------------------------------ PyTorchJob
MASTER, WORKER = "Master", "Worker"


def pytorchjob(ctx: Context, top: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    meta = distributed(ctx, top, pod, *SPEC_FIELDS["PyTorchJob"])
    min_replicas = nested_int(top, "spec", "elasticPolicy", "minReplicas", where=repr(top))
    if min_replicas is not None:
        meta.min_available = min_replicas
    minimum = _min_available(top)
    if minimum is not None:
        meta.min_available = minimum
    meta.subgroups = pytorch_subgroups(top, pod, meta.min_available)
    return meta


def pytorch_subgroups(top: Obj, pod: Pod, total_min: int) -> list[SubGroupMetadata]:
    specs = top.get("spec", "pytorchReplicaSpecs")
    if not isinstance(specs, dict):
        raise GroupingError(f"pytorchReplicaSpecs not found in PyTorchJob {top.namespace}/{top.name}")
    where = repr(top)
    masters = nested_int(specs, MASTER, "replicas", where=where) or 0
    role = pod.metadata.labels.get(REPLICA_TYPE_LABEL)
    out: list[SubGroupMetadata] = []
    if MASTER in specs and masters:
        out.append(SubGroupMetadata("master", masters, pods=[pod.metadata.name] if role == "master" else []))
    if WORKER not in specs:
        return out
    workers = nested_int(specs, WORKER, "replicas", where=where)
    workers = 1 if workers is None else workers
    worker_min = max(0, total_min - masters)
    mine = [pod.metadata.name] if role == "worker" else []
    seg = _segment_size(pod, specs)
    if seg is None:
        out.append(SubGroupMetadata("worker", worker_min, pods=mine))
        return out
    n, partial = divmod(workers, seg)
    n += 1 if partial else 0
    index = -1
    if role == "worker":
        raw = pod.metadata.labels.get(REPLICA_INDEX_LABEL)
        if raw is None:
            raise GroupingError(f"replica index label not found on pod {pod.metadata.namespace}/{pod.metadata.name}")
        index = parse_int(raw, "replica index") // seg
    topology = _segment_topology(pod, specs, top)
    out.append(SubGroupMetadata("worker", worker_min))
    for k in range(n):
        size = partial if partial and k == n - 1 else seg
        out.append(SubGroupMetadata(f"worker-{k}", size, parent="worker", topology=topology,
                                    pods=list(mine) if k == index else []))
    return out


def _segment_size(pod: Pod, specs: dict) -> int | None:
    raw = pod.metadata.annotations.get(SEGMENT_SIZE, "")
    if raw:
        size = parse_int(raw, f"segment size on pod {pod.metadata.namespace}/{pod.metadata.name}")
        if size <= 0:
            raise GroupingError(f"segment size {raw} on pod {pod.metadata.namespace}/{pod.metadata.name} "
                                f"needs to be a positive integer")
        return size
    raw = template_annotations(specs.get(WORKER)).get(SEGMENT_SIZE, "")
    if not raw:
        return None
    size = parse_int(raw, "segment size on worker podTemplate")
    if size <= 0:
        raise GroupingError(f"segment size {raw} on worker podTemplate needs to be a positive integer")
    return size


def _worker_value(pod: Pod, specs: dict, key: str) -> str:
    return pod.metadata.annotations.get(key, "") or template_annotations(specs.get(WORKER)).get(key, "")


def _segment_topology(pod: Pod, specs: dict, top: Obj) -> Topology | None:
    topology = _worker_value(pod, specs, C.TOPOLOGY) or top.annotations.get(C.TOPOLOGY, "")
    if not topology:
        return None
    required, preferred = _worker_value(pod, specs, SEGMENT_REQUIRED), _worker_value(pod, specs, SEGMENT_PREFERRED)
    if not required and not preferred:
        return None
    return Topology(topology=topology, required=required, preferred=preferred)
