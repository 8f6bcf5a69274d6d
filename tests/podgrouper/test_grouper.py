"""Pod-grouper table: owner manifests (dicts) -> PodGroup name, minMember, queue, priority."""
from __future__ import annotations

import msgspec
import pytest

from kai.api.k8s import Pod
from kai.podgrouper.grouper import group_for_pod, group_owner, owner_chain, top_owner

NS = "team-a"


def ref(kind, name, uid, api="v1"):
    return {"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": True}


def obj(kind, name, uid, api="v1", spec=None, labels=None, annotations=None, owner=None, status=None):
    meta = {"name": name, "namespace": NS, "uid": uid}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [owner]
    out = {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec or {}}
    if status:
        out["status"] = status
    return out


def pod(name="p-0", uid="pod-uid", owner=None, labels=None, annotations=None, spec=None):
    meta = {"name": name, "namespace": NS, "uid": uid, "labels": labels or {}, "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [owner]
    return msgspec.convert({"metadata": meta, "spec": {"schedulerName": "kai-scheduler", **(spec or {})}}, Pod)


def owners_of(*objs):
    return {(o["kind"], NS, o["metadata"]["name"]): o for o in objs}


# --------------------------------------------------------------------------- fixtures per kind
JOB = obj("Job", "train", "job-u", "batch/v1", spec={"parallelism": 3})
JOB_MM = obj("Job", "gang", "gang-u", "batch/v1", annotations={"kai.scheduler/batch-min-member": "4"})
CRON = obj("CronJob", "nightly", "cron-u", "batch/v1", labels={"kai.scheduler/queue": "cron-q"})
CRON_JOB = obj("Job", "nightly-28000", "cj-u", "batch/v1", labels={"kai.scheduler/queue": "job-q"},
               owner=ref("CronJob", "nightly", "cron-u", "batch/v1"))
DEPLOY = obj("Deployment", "web", "dep-u", "apps/v1", labels={"kai.scheduler/queue": "serve"})
RS = obj("ReplicaSet", "web-5d9", "rs-u", "apps/v1", owner=ref("Deployment", "web", "dep-u", "apps/v1"))
RS_BARE = obj("ReplicaSet", "lonely", "rsb-u", "apps/v1")
STS = obj("StatefulSet", "db", "sts-u", "apps/v1", spec={"replicas": 3})
STS_PAR = obj("StatefulSet", "ring", "ring-u", "apps/v1", spec={"replicas": 4, "podManagementPolicy": "Parallel"},
              annotations={"kai.scheduler/min-member": "4"})
STS_ORD = obj("StatefulSet", "ord", "ord-u", "apps/v1", spec={"replicas": 4},
              annotations={"kai.scheduler/min-member": "4"})
RJOBS = [{"name": "driver", "replicas": 1, "template": {"spec": {"parallelism": 1}}},
         {"name": "workers", "replicas": 2, "template": {"spec": {"parallelism": 4}}}]
JS_ANY = obj("JobSet", "js", "js-u", "jobset.x-k8s.io/v1alpha2", spec={"replicatedJobs": RJOBS})
JS_IN = obj("JobSet", "jsi", "jsi-u", "jobset.x-k8s.io/v1alpha2",
            spec={"replicatedJobs": RJOBS, "startupPolicy": {"startupPolicyOrder": "InOrder"}})
JS_CHILD = obj("Job", "js-workers-0", "jsj-u", "batch/v1", owner=ref("JobSet", "js", "js-u", "jobset.x-k8s.io/v1alpha2"))
JSI_CHILD = obj("Job", "jsi-workers-1", "jsij-u", "batch/v1",
                owner=ref("JobSet", "jsi", "jsi-u", "jobset.x-k8s.io/v1alpha2"))
LWS = obj("LeaderWorkerSet", "llm", "lws-u", "leaderworkerset.x-k8s.io/v1",
          spec={"replicas": 2, "leaderWorkerTemplate": {"size": 4}})
LWS_RDY = obj("LeaderWorkerSet", "llr", "lwr-u", "leaderworkerset.x-k8s.io/v1",
              spec={"startupPolicy": "LeaderReady", "leaderWorkerTemplate": {"size": 4}})
LWS_STS = obj("StatefulSet", "llm-1", "lsts-u", "apps/v1", owner=ref("LeaderWorkerSet", "llm", "lws-u",
                                                                      "leaderworkerset.x-k8s.io/v1"))
PT = obj("PyTorchJob", "bert", "pt-u", "kubeflow.org/v1",
         spec={"pytorchReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}})
PT_MIN = obj("PyTorchJob", "bert-min", "ptm-u", "kubeflow.org/v1",
             spec={"runPolicy": {"schedulingPolicy": {"minAvailable": 2}},
                   "pytorchReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}})
PT_ELASTIC = obj("PyTorchJob", "bert-el", "pte-u", "kubeflow.org/v1",
                 spec={"elasticPolicy": {"minReplicas": 2, "maxReplicas": 8},
                       "pytorchReplicaSpecs": {"Worker": {"replicas": 8}}})
TF = obj("TFJob", "resnet", "tf-u", "kubeflow.org/v1",
         spec={"tfReplicaSpecs": {"PS": {"replicas": 2}, "Worker": {"replicas": 4}, "Chief": {"replicas": 1}}})
MPI = obj("MPIJob", "hvd", "mpi-u", "kubeflow.org/v2beta1",
          spec={"mpiReplicaSpecs": {"Launcher": {"replicas": 1}, "Worker": {"replicas": 2}}})
MPI_MIN = obj("MPIJob", "hvd2", "mpi2-u", "kubeflow.org/v2beta1",
              spec={"runPolicy": {"schedulingPolicy": {"minAvailable": 5}},
                    "mpiReplicaSpecs": {"Launcher": {"replicas": 1}, "Worker": {"replicas": 8}}})
RAY_SPEC = {"headGroupSpec": {}, "workerGroupSpecs": [
    {"groupName": "small", "replicas": 2},
    {"groupName": "multi", "replicas": 2, "numOfHosts": 2},
    {"groupName": "auto", "replicas": 5, "minReplicas": 1},
    {"groupName": "off", "replicas": 3, "suspended": True}]}
RAYC = obj("RayCluster", "rc", "rc-u", "ray.io/v1", spec=RAY_SPEC, labels={"ray.io/priority-class-name": "build"})
RAYJ = obj("RayJob", "rj", "rj-u", "ray.io/v1", spec={"rayClusterSpec": RAY_SPEC},
           status={"rayClusterName": "rj-raycluster"})
RAYJ_CLUSTER = obj("RayCluster", "rj-raycluster", "rjc-u", "ray.io/v1",
                   spec={"workerGroupSpecs": [{"replicas": 1}]}, owner=ref("RayJob", "rj", "rj-u", "ray.io/v1"))
RAY_AUTO = obj("RayCluster", "rca", "rca-u", "ray.io/v1",
               spec={"enableInTreeAutoscaling": True, "workerGroupSpecs": [{"replicas": 4}]})
NB = obj("Notebook", "jupyter", "nb-u", "kubeflow.org/v1beta1")
NB_STS = obj("StatefulSet", "jupyter", "nbs-u", "apps/v1", owner=ref("Notebook", "jupyter", "nb-u",
                                                                     "kubeflow.org/v1beta1"))
WF = obj("Workflow", "flow", "wf-u", "argoproj.io/v1alpha1",
         labels={"kai.scheduler/queue": "argo-q", "priorityClassName": "build"},
         annotations={"kai.scheduler/topology": "dc", "kai.scheduler/topology-required-placement": "rack"})
WF_JOB = obj("Job", "flow-step", "wfj-u", "batch/v1", annotations={"kai.scheduler/batch-min-member": "2"},
             owner=ref("Workflow", "flow", "wf-u", "argoproj.io/v1alpha1"))


CASES = [
    # id, pod kwargs, owners, expected (name, minMember, queue, priority, owner kind)
    ("bare-pod", dict(name="solo", uid="su"), [], ("pg-solo-su", 1, "default-queue", "train", "Pod")),
    ("job", dict(owner=ref("Job", "train", "job-u", "batch/v1")), [JOB],
     ("pg-train-job-u", 1, "default-queue", "train", "Job")),
    ("job-batch-min-member", dict(owner=ref("Job", "gang", "gang-u", "batch/v1")), [JOB_MM],
     ("pg-gang-gang-u", 4, "default-queue", "train", "Job")),
    ("job-unknown-manifest", dict(owner=ref("Job", "ghost", "gh-u", "batch/v1")), [],
     ("pg-ghost-gh-u", 1, "default-queue", "train", "Job")),
    ("cronjob-groups-by-job", dict(owner=ref("Job", "nightly-28000", "cj-u", "batch/v1")), [CRON, CRON_JOB],
     ("pg-nightly-28000-cj-u", 1, "job-q", "train", "Job")),
    ("deployment-per-pod", dict(name="web-5d9-x", uid="px", owner=ref("ReplicaSet", "web-5d9", "rs-u", "apps/v1")),
     [DEPLOY, RS], ("pg-web-5d9-x-px", 1, "serve", "inference", "Pod")),
    ("replicaset-alone", dict(owner=ref("ReplicaSet", "lonely", "rsb-u", "apps/v1")), [RS_BARE],
     ("pg-lonely-rsb-u", 1, "default-queue", "train", "ReplicaSet")),
    ("statefulset", dict(owner=ref("StatefulSet", "db", "sts-u", "apps/v1")), [STS],
     ("pg-db-sts-u", 1, "default-queue", "train", "StatefulSet")),
    ("statefulset-min-member-parallel", dict(owner=ref("StatefulSet", "ring", "ring-u", "apps/v1")), [STS_PAR],
     ("pg-ring-ring-u", 4, "default-queue", "train", "StatefulSet")),
    ("statefulset-min-member-ordered-ignored", dict(owner=ref("StatefulSet", "ord", "ord-u", "apps/v1")), [STS_ORD],
     ("pg-ord-ord-u", 1, "default-queue", "train", "StatefulSet")),
    ("jobset-anyorder", dict(owner=ref("Job", "js-workers-0", "jsj-u", "batch/v1"),
                             labels={"jobset.sigs.k8s.io/replicatedjob-name": "workers"}), [JS_ANY, JS_CHILD],
     ("pg-js-js-u", 9, "default-queue", "train", "JobSet")),
    ("jobset-inorder-per-replicatedjob", dict(owner=ref("Job", "jsi-workers-1", "jsij-u", "batch/v1"),
                                              labels={"jobset.sigs.k8s.io/replicatedjob-name": "workers"}),
     [JS_IN, JSI_CHILD], ("pg-jsi-jsi-u-workers", 8, "default-queue", "train", "JobSet")),
    ("lws-per-group", dict(owner=ref("StatefulSet", "llm-1", "lsts-u", "apps/v1"),
                           labels={"leaderworkerset.sigs.k8s.io/group-index": "1",
                                   "leaderworkerset.sigs.k8s.io/worker-index": "2"}), [LWS, LWS_STS],
     ("pg-llm-lws-u-group-1", 4, "default-queue", "train", "LeaderWorkerSet")),
    ("lws-leader-ready-leader", dict(owner=ref("LeaderWorkerSet", "llr", "lwr-u", "leaderworkerset.x-k8s.io/v1"),
                                     labels={"leaderworkerset.sigs.k8s.io/group-index": "0",
                                             "leaderworkerset.sigs.k8s.io/worker-index": "0"}), [LWS_RDY],
     ("pg-llr-lwr-u-group-0", 1, "default-queue", "train", "LeaderWorkerSet")),
    ("lws-leader-ready-worker", dict(owner=ref("LeaderWorkerSet", "llr", "lwr-u", "leaderworkerset.x-k8s.io/v1"),
                                     labels={"leaderworkerset.sigs.k8s.io/group-index": "0",
                                             "leaderworkerset.sigs.k8s.io/worker-index": "3"}), [LWS_RDY],
     ("pg-llr-lwr-u-group-0", 4, "default-queue", "train", "LeaderWorkerSet")),
    ("pytorch-sum", dict(owner=ref("PyTorchJob", "bert", "pt-u", "kubeflow.org/v1")), [PT],
     ("pg-bert-pt-u", 4, "default-queue", "train", "PyTorchJob")),
    ("pytorch-minavailable", dict(owner=ref("PyTorchJob", "bert-min", "ptm-u", "kubeflow.org/v1")), [PT_MIN],
     ("pg-bert-min-ptm-u", 2, "default-queue", "train", "PyTorchJob")),
    ("pytorch-elastic", dict(owner=ref("PyTorchJob", "bert-el", "pte-u", "kubeflow.org/v1")), [PT_ELASTIC],
     ("pg-bert-el-pte-u", 2, "default-queue", "train", "PyTorchJob")),
    ("tfjob-sum", dict(owner=ref("TFJob", "resnet", "tf-u", "kubeflow.org/v1")), [TF],
     ("pg-resnet-tf-u", 7, "default-queue", "train", "TFJob")),
    ("mpijob-sum", dict(owner=ref("MPIJob", "hvd", "mpi-u", "kubeflow.org/v2beta1")), [MPI],
     ("pg-hvd-mpi-u", 3, "default-queue", "train", "MPIJob")),
    ("mpijob-minavailable", dict(owner=ref("MPIJob", "hvd2", "mpi2-u", "kubeflow.org/v2beta1")), [MPI_MIN],
     ("pg-hvd2-mpi2-u", 5, "default-queue", "train", "MPIJob")),
    # head 1 + small 2 + multi 2x2 + auto min 1 (suspended group ignored) = 8; ray's own priority label
    ("raycluster", dict(owner=ref("RayCluster", "rc", "rc-u", "ray.io/v1")), [RAYC],
     ("pg-rc-rc-u", 8, "default-queue", "build", "RayCluster")),
    ("raycluster-autoscaling", dict(owner=ref("RayCluster", "rca", "rca-u", "ray.io/v1")), [RAY_AUTO],
     ("pg-rca-rca-u", 1, "default-queue", "train", "RayCluster")),
    ("rayjob-uses-its-cluster", dict(owner=ref("RayCluster", "rj-raycluster", "rjc-u", "ray.io/v1")),
     [RAYJ, RAYJ_CLUSTER], ("pg-rj-rj-u", 2, "default-queue", "train", "RayJob")),
    ("notebook-build", dict(owner=ref("StatefulSet", "jupyter", "nbs-u", "apps/v1")), [NB, NB_STS],
     ("pg-jupyter-nb-u", 1, "default-queue", "build", "Notebook")),
    ("argo-skips-workflow", dict(owner=ref("Job", "flow-step", "wfj-u", "batch/v1")), [WF, WF_JOB],
     ("pg-flow-step-wfj-u", 2, "argo-q", "build", "Job")),
    ("argo-pod-directly-under-workflow", dict(name="step-a", uid="sa-u",
                                              owner=ref("Workflow", "flow", "wf-u", "argoproj.io/v1alpha1")),
     [WF], ("pg-step-a-sa-u", 1, "argo-q", "build", "Pod")),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_grouping_table(case):
    _id, pod_kw, objs, (name, minimum, queue, priority, owner_kind) = case
    p = pod(**pod_kw)
    owners = owners_of(*objs)
    pg = group_for_pod(p, owners)
    assert pg.metadata.name == name
    assert pg.metadata.namespace == NS
    assert pg.spec.min_member == minimum
    assert pg.spec.queue == queue
    assert pg.spec.priority_class_name == priority
    assert group_owner(p, owners).kind == owner_kind
    if pg.metadata.owner_references:
        assert pg.metadata.owner_references[0].kind == owner_kind


def test_jobset_inorder_groups_each_replicated_job_separately():
    owners = owners_of(JS_IN, JSI_CHILD)
    drv = pod(owner=ref("Job", "jsi-workers-1", "jsij-u", "batch/v1"),
              labels={"jobset.sigs.k8s.io/replicatedjob-name": "driver"})
    assert group_for_pod(drv, owners).metadata.name == "pg-jsi-jsi-u-driver"
    assert group_for_pod(drv, owners).spec.min_member == 1


def test_deployment_pods_get_one_podgroup_each():
    owners = owners_of(DEPLOY, RS)
    a = pod("web-a", "ua", owner=ref("ReplicaSet", "web-5d9", "rs-u", "apps/v1"))
    b = pod("web-b", "ub", owner=ref("ReplicaSet", "web-5d9", "rs-u", "apps/v1"))
    assert group_for_pod(a, owners).metadata.name != group_for_pod(b, owners).metadata.name


def test_pods_of_one_job_share_a_podgroup():
    owners = owners_of(JOB)
    names = {group_for_pod(pod(f"train-{i}", f"u{i}", owner=ref("Job", "train", "job-u", "batch/v1")),
                           owners).metadata.name for i in range(3)}
    assert names == {"pg-train-job-u"}


@pytest.mark.parametrize("owner_labels,pod_labels,pod_spec,expect", [
    ({}, {}, {}, ("default-queue", "train", "")),
    ({"kai.scheduler/queue": "qo"}, {"kai.scheduler/queue": "qp"}, {}, ("qo", "train", "")),
    ({}, {"kai.scheduler/queue": "qp"}, {}, ("qp", "train", "")),
    ({"project": "proj"}, {}, {}, ("proj", "train", "")),
    ({}, {"project": "proj", "kai.scheduler/node-pool": "pool-a"}, {}, ("proj-pool-a", "train", "")),
    ({"kai.scheduler/queue": "q", "project": "proj"}, {}, {}, ("q", "train", "")),
    ({"priorityClassName": "build"}, {"priorityClassName": "inference"}, {"priorityClassName": "x"},
     ("default-queue", "build", "")),
    ({}, {"priorityClassName": "inference"}, {"priorityClassName": "x"}, ("default-queue", "inference", "")),
    ({}, {}, {"priorityClassName": "spec-pc"}, ("default-queue", "spec-pc", "")),
    ({"kai.scheduler/preemptibility": "non-preemptible"}, {"kai.scheduler/preemptibility": "preemptible"}, {},
     ("default-queue", "train", "non-preemptible")),
    ({}, {"kai.scheduler/preemptibility": "preemptible"}, {}, ("default-queue", "train", "preemptible")),
    ({"kai.scheduler/preemptibility": "bogus"}, {}, {}, ("default-queue", "train", "")),
])
def test_queue_priority_preemptibility(owner_labels, pod_labels, pod_spec, expect):
    job = obj("Job", "j", "j-u", "batch/v1", labels=owner_labels)
    p = pod(owner=ref("Job", "j", "j-u", "batch/v1"), labels=pod_labels, spec=pod_spec)
    pg = group_for_pod(p, owners_of(job))
    assert (pg.spec.queue, pg.spec.priority_class_name, pg.spec.preemptibility) == expect
    assert pg.metadata.labels["kai.scheduler/queue"] == expect[0]


def test_deployment_priority_label_overrides_inference_default():
    dep = obj("Deployment", "web", "dep-u", "apps/v1", labels={"priorityClassName": "train"})
    p = pod(owner=ref("ReplicaSet", "web-5d9", "rs-u", "apps/v1"))
    assert group_for_pod(p, owners_of(dep, RS)).spec.priority_class_name == "train"


def test_topology_annotations_from_owner_and_skipped_owner():
    p = pod(owner=ref("Job", "flow-step", "wfj-u", "batch/v1"))
    tc = group_for_pod(p, owners_of(WF, WF_JOB)).spec.topology_constraint
    assert (tc.topology, tc.required_topology_level, tc.preferred_topology_level) == ("dc", "rack", "")
    assert group_for_pod(pod(owner=ref("Job", "train", "job-u", "batch/v1")),
                         owners_of(JOB)).spec.topology_constraint is None


def test_pod_naming_its_podgroup_is_left_alone():
    p = pod(annotations={"pod-group-name": "mine"}, owner=ref("Job", "train", "job-u", "batch/v1"))
    assert group_for_pod(p, owners_of(JOB)) is None


def test_owner_chain_and_top_owner():
    p = pod(owner=ref("ReplicaSet", "web-5d9", "rs-u", "apps/v1"))
    owners = owners_of(DEPLOY, RS)
    assert [o.kind for o in owner_chain(p, owners)] == ["ReplicaSet", "Deployment"]
    assert top_owner(p, owners)[:3] == ("Deployment", "web", "dep-u")
    assert top_owner(pod("solo", "su"), {})[:3] == ("Pod", "solo", "su")
