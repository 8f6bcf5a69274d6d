"""The grouper hub: owner walk, dispatch by group/version/kind, look-through owners (cases
from KAI's podgrouper_test.go, hub_test.go and skiptopowner_test.go)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, owned_by, pod, ref
from kai.podgrouper.hub import GROUPERS, grouper_for
from kai.podgrouper.metadata import GroupingError
from kai.podgrouper.objects import Obj
from kai.podgrouper.plugins import workloads

QUEUE = "kai.scheduler/queue"


def test_argo_pod_directly_under_the_workflow():
    wf = obj("Workflow", "hello-world-workflow", "uid", "argoproj.io/v1alpha1", ns="namespace",
             labels={QUEUE: "test"})
    p = pod("argo-pod", "uid-pod", owner=ref("Workflow", "hello-world-workflow", "uid", "argoproj.io/v1alpha1"),
            ns="namespace")
    m = group(p, wf)
    assert (m.name, m.queue, m.priority_class_name, m.min_available) == ("pg-argo-pod-uid-pod", "test", "train", 1)
    assert (m.owner.kind, m.owner.api_version, m.owner.name, m.owner.uid) == ("Pod", "v1", "argo-pod", "uid-pod")
    assert m.labels == {QUEUE: "test"}
    assert m.annotations == {"kai.scheduler/top-owner-metadata":
                             'name: argo-pod\nuid: uid-pod\ngroup: ""\nversion: v1\nkind: Pod\n'}


def test_argo_step_job_inherits_the_workflow_metadata():
    wf = obj("Workflow", "flow", "wf-u", "argoproj.io/v1alpha1", labels={QUEUE: "argo-q", "priorityClassName": "build"},
             annotations={"kai.scheduler/topology": "dc", "kai.scheduler/topology-required-placement": "rack"})
    job = obj("Job", "flow-step", "j-u", "batch/v1", labels={"own": "x"}, spec={"parallelism": 1},
              owner=ref("Workflow", "flow", "wf-u", "argoproj.io/v1alpha1"))
    m = group(owned_by(job, "flow-step-abc"), job, wf)
    assert (m.name, m.owner.kind, m.queue, m.priority_class_name) == ("pg-flow-step-abc-j-u", "Job", "argo-q", "build")
    assert (m.topology.topology, m.topology.required) == ("dc", "rack")
    assert m.labels == {QUEUE: "argo-q", "priorityClassName": "build", "own": "x"}


def test_skipped_owner_labels_do_not_override_the_lower_owners():
    wf = obj("Workflow", "flow", "wf-u", "argoproj.io/v1alpha1", labels={QUEUE: "top-q"})
    sts = obj("StatefulSet", "s", "s-u", "apps/v1", labels={QUEUE: "own-q"},
              owner=ref("Workflow", "flow", "wf-u", "argoproj.io/v1alpha1"))
    rs = obj("ReplicaSet", "r", "r-u", "apps/v1", owner=ref("StatefulSet", "s", "s-u", "apps/v1"))
    m = group(owned_by(rs), rs, sts, wf)
    assert (m.owner.kind, m.queue) == ("StatefulSet", "own-q")


def test_trainjob_is_grouped_as_its_jobset():
    tj = obj("TrainJob", "tj", "tj-u", "trainer.kubeflow.org/v1alpha1", labels={QUEUE: "train-q"})
    js = obj("JobSet", "tj", "js-u", "jobset.x-k8s.io/v1alpha2", owner=ref("TrainJob", "tj", "tj-u",
                                                                          "trainer.kubeflow.org/v1alpha1"),
             spec={"replicatedJobs": [{"name": "node", "replicas": 1, "template": {"spec": {"parallelism": 4}}}]})
    child = obj("Job", "tj-node-0", "j-u", "batch/v1", owner=ref("JobSet", "tj", "js-u", "jobset.x-k8s.io/v1alpha2"))
    p = owned_by(child, labels={"jobset.sigs.k8s.io/replicatedjob-name": "node"})
    m = group(p, child, js, tj)
    assert (m.name, m.min_available, m.owner.kind, m.queue) == ("pg-tj-js-u-node", 4, "JobSet", "train-q")


def test_runai_workloads_any_version():
    tw = obj("TrainingWorkload", "w", "w-u", "run.ai/v2alpha1", labels={QUEUE: "rq"})
    rs = obj("ReplicaSet", "r", "r-u", "apps/v1", owner=ref("TrainingWorkload", "w", "w-u", "run.ai/v2alpha1"))
    m = group(owned_by(rs), rs, tw)
    assert (m.owner.kind, m.queue) == ("ReplicaSet", "rq")


@pytest.mark.parametrize("group_version,kind", [
    ("kubeflow.org/v1", "PyTorchJob"), ("kubeflow.org/v1", "TFJob"), ("kubeflow.org/v1", "XGBoostJob"),
    ("kubeflow.org/v1", "JAXJob"), ("kubeflow.org/v1", "MPIJob"), ("kubeflow.org/v2beta1", "MPIJob"),
    ("kubeflow.org/v1beta1", "Notebook"), ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("apps/v1", "Deployment"),
    ("ray.io/v1", "RayCluster"), ("ray.io/v1alpha1", "RayJob"), ("ray.io/v1", "RayService"),
    ("jobset.x-k8s.io/v1alpha2", "JobSet"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
    ("grove.io/v1alpha1", "PodGangSet"), ("grove.io/v1alpha1", "PodCliqueSet"), ("serving.knative.dev/v1", "Service"),
    ("argoproj.io/v1alpha1", "Workflow"), ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
    ("nvidia.com/v1alpha1", "DynamoGraphDeployment"), ("run.ai/v2", "DistributedWorkload"),
])
def test_kinds_with_their_own_rule(group_version, kind):
    assert grouper_for(Obj({"apiVersion": group_version, "kind": kind})) is not workloads.default


@pytest.mark.parametrize("group_version,kind", [
    ("apps/v1", "ReplicaSet"), ("tekton.dev/v1", "PipelineRun"), ("example.com/v1", "Unknown"),
    ("kubeflow.org/v2", "PyTorchJob"),      # exact versions, as KAI's table
    ("v1", "Service"),                      # a core Service is no Knative Service
])
def test_kinds_with_the_default_rule(group_version, kind):
    assert grouper_for(Obj({"apiVersion": group_version, "kind": kind})) is workloads.default
    assert len(GROUPERS) >= 40


def test_owner_walk_errors():
    rs = obj("ReplicaSet", "r", "r-u", "apps/v1")
    rs_two_owners = dict(rs, metadata={**rs["metadata"], "ownerReferences": [
        ref("Deployment", "a", "a-u", "apps/v1"), ref("Deployment", "b", "b-u", "apps/v1")]})
    with pytest.raises(GroupingError, match="multiple owners"):
        group(owned_by(rs), rs_two_owners)
    with pytest.raises(GroupingError, match="ReplicaSet test_namespace/r .* not found"):
        group(owned_by(rs))
    stale = pod(owner=ref("ReplicaSet", "r", "other-uid", "apps/v1"))
    with pytest.raises(GroupingError, match="re-created"):
        group(stale, rs)
    # KAI follows the first owner reference, controller or not
    dep = obj("Deployment", "d", "d-u", "apps/v1")
    p = pod(owner=[ref("Job", "j", "j-u", "batch/v1"), ref("Deployment", "d", "d-u", "apps/v1")])
    j = obj("Job", "j", "j-u", "batch/v1", spec={})
    assert group(p, j, dep).owner.kind == "Job"


def test_manifests_without_uid_or_apiversion_use_the_reference():
    j = {"kind": "Job", "metadata": {"name": "train", "namespace": "test_namespace"}, "spec": {}}
    m = group(pod("train-x", "px", owner=ref("Job", "train", "job-uid", "batch/v1")), j)
    assert (m.name, m.owner.uid, m.owner.api_version) == ("pg-train-x-job-uid", "job-uid", "batch/v1")
