"""The grouper hub: which grouper handles a top owner, by group, version and kind (KAI's
``pluginshub``), and :func:`podgroup_metadata`, the pod-grouper's one entry point.

Owners are matched on their exact API version, as KAI does (``*`` matches any version); an
owner with no entry gets the default grouper. The "skip top owner" groupers (Argo Workflow,
Kubeflow Trainer TrainJob, Run:ai workloads, NVIDIA DynamoGraphDeployment) look through the
top owner: the owner below it -- or the pod, when the pod is its direct child -- is grouped
by its own rule, after inheriting the skipped owner's labels and annotations it lacks.

Called by ``kai.podgrouper.controller`` (live), ``kai.podgrouper.batch`` (``kai simulate``)
and ``kai.podgrouper.grouper`` (compatibility API).
"""
from __future__ import annotations

from typing import Callable

from kai.api.k8s import Pod
from kai.podgrouper.defaults import Context, GrouperConfig
from kai.podgrouper.metadata import GroupingError, PodGroupMetadata
from kai.podgrouper.objects import Forbidden, Obj, Reader, owners_of, pod_obj
from kai.podgrouper.plugins import grove, jobset, knative, kubeflow, lws, ray, workloads

Grouper = Callable[[Context, Obj, Pod, list[Obj]], PodGroupMetadata]


def _skip_top_owner(ctx: Context, skipped: Obj, pod: Pod, owners: list[Obj]) -> PodGroupMetadata:
    if len(owners) <= 1:
        partial = pod_obj(pod)
    else:
        partial = owners[-2]
    try:
        raw = ctx.get(partial.api_version, partial.kind, partial.namespace or pod.metadata.namespace or "default",
                      partial.name)
    except Forbidden:
        raw = None
    if raw is None:
        raise GroupingError(f"failed to get last owner: {partial.kind} {partial.namespace}/{partial.name} not readable")
    last = Obj(raw)
    if not last.uid and partial.uid:
        last = Obj({**raw, "metadata": {**last.meta, "uid": partial.uid}})
    labels = {**skipped.labels, **last.labels}
    annotations = {**skipped.annotations, **last.annotations}
    last = last.with_metadata(labels, annotations)
    return grouper_for(last)(ctx, last, pod, owners[:-1])


GROUPERS: dict[tuple[str, str, str], Grouper] = {
    ("apps", "v1", "Deployment"): workloads.deployment,
    ("apps", "v1", "StatefulSet"): workloads.statefulset,
    ("apps", "v1", "ReplicaSet"): workloads.default,
    ("batch", "v1", "Job"): workloads.batch_job,
    ("batch", "v1", "CronJob"): workloads.cronjob,
    ("", "v1", "Pod"): workloads.pod_job,
    ("machinelearning.seldon.io", "v1alpha2", "SeldonDeployment"): workloads.default,
    ("machinelearning.seldon.io", "v1", "SeldonDeployment"): workloads.default,
    ("kubevirt.io", "v1", "VirtualMachineInstance"): workloads.default,
    ("workspace.devfile.io", "v1alpha2", "DevWorkspace"): workloads.default,
    ("kubeflow.org", "v1alpha1", "ScheduledWorkflow"): workloads.default,
    ("tekton.dev", "v1", "PipelineRun"): workloads.default,
    ("tekton.dev", "v1", "TaskRun"): workloads.default,
    ("kubeflow.org", "v1", "TFJob"): kubeflow.tfjob,
    ("kubeflow.org", "v1", "PyTorchJob"): kubeflow.pytorchjob,
    ("kubeflow.org", "v1", "XGBoostJob"): kubeflow.xgboostjob,
    ("kubeflow.org", "v1", "JAXJob"): kubeflow.jaxjob,
    ("kubeflow.org", "v1", "MPIJob"): kubeflow.mpijob,
    ("kubeflow.org", "v2beta1", "MPIJob"): kubeflow.mpijob,
    ("kubeflow.org", "v1beta1", "Notebook"): workloads.notebook,
    ("run.ai", "v1", "RunaiJob"): workloads.runai_job,
    ("amlarc.azureml.com", "v1alpha1", "AmlJob"): workloads.aml_job,
    ("egx.nvidia.io", "v1", "SPOTRequest"): workloads.spot_request,
    ("serving.knative.dev", "v1", "Service"): knative.knative,
    ("ray.io", "v1alpha1", "RayCluster"): ray.ray,
    ("ray.io", "v1alpha1", "RayJob"): ray.ray,
    ("ray.io", "v1alpha1", "RayService"): ray.ray,
    ("ray.io", "v1", "RayCluster"): ray.ray,
    ("ray.io", "v1", "RayJob"): ray.ray,
    ("ray.io", "v1", "RayService"): ray.ray,
    ("leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet"): lws.lws,
    ("jobset.x-k8s.io", "v1alpha2", "JobSet"): jobset.jobset,
    ("grove.io", "v1alpha1", "PodGangSet"): grove.grove,
    ("grove.io", "v1alpha1", "PodCliqueSet"): grove.grove,
    ("argoproj.io", "v1alpha1", "Workflow"): _skip_top_owner,
    ("trainer.kubeflow.org", "v1alpha1", "TrainJob"): _skip_top_owner,
    ("nvidia.com", "v1alpha1", "DynamoGraphDeployment"): _skip_top_owner,
    **{("run.ai", "*", k): _skip_top_owner for k in ("InferenceWorkload", "TrainingWorkload", "DistributedWorkload",
                                                     "InteractiveWorkload", "DistributedInferenceWorkload")},
}

#: kinds kai simulate keeps from manifests as possible owners (tops and the objects between)
OWNER_KINDS = frozenset({k for (_g, _v, k) in GROUPERS} | {"Revision", "Configuration", "PodGang", "PodClique",
                                                           "PodCliqueScalingGroup", "ConfigMap"}) - {"Pod"}


def grouper_for(top: Obj) -> Grouper:
    g = GROUPERS.get((top.group, top.version, top.kind)) or GROUPERS.get((top.group, "*", top.kind))
    return g or workloads.default


def podgroup_metadata(pod: Pod, reader: Reader, config: GrouperConfig | None = None) -> PodGroupMetadata:
    """The PodGroup metadata KAI's pod-grouper makes for ``pod``; raises GroupingError."""
    ctx = Context(reader, config or GrouperConfig())
    top, owners = owners_of(pod, reader)
    return grouper_for(top)(ctx, top, pod, owners)
