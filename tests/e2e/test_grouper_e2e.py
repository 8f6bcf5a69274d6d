"""End to end: the pod-grouper of ``kai scheduler`` on a real API server, with the owners' CRDs
installed (LeaderWorkerSet, JobSet, PyTorchJob; minimal schemas, their operators absent) and
the pods created as those operators create them:

* PyTorchJob: the training operator's pods, owned by the PyTorchJob, labelled with replica
  type / index / job role. PodGroup ``pg-<job>-<uid>`` with ``master`` and ``worker``
  SubGroups; nothing is bound until the worker SubGroup is complete.
* JobSet (no startup policy: InOrder): the JobSet controller's child Jobs (created here), whose
  pods the real job-controller creates. One PodGroup per replicatedJob.
* LeaderWorkerSet: the leader StatefulSet owned by the LWS, the worker StatefulSet owned by the
  leader pod, pods created by the real statefulset-controller. PodGroup
  ``pg-<lws>-<uid>-group-0`` with ``leader`` and ``workers`` SubGroups.
* A PyTorchJob without replica specs: the pod is not grouped and gets a PodGrouperWarning Event.

The scheduler runs with the chart's RBAC (``kai_scheduler`` fixture).
"""
from __future__ import annotations

import time

import pytest

from e2e_helpers import pod_manifest, wait_for
from kai.cache.kubeclient import ApiError

pytestmark = pytest.mark.integration

PG = "/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
CRDS = [("leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet", "leaderworkersets"),
        ("jobset.x-k8s.io", "v1alpha2", "JobSet", "jobsets"),
        ("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs")]


def crd(group, version, kind, plural):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": version, "served": True, "storage": True, "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture(scope="module")
def owner_crds(kai_client, kai_cluster):
    c = kai_client
    for group, version, kind, plural in CRDS:
        try:
            c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd(group, version, kind, plural))
        except ApiError as exc:
            if exc.status != 409:
                raise

        def established(name=f"{plural}.{group}", path=f"/apis/{group}/{version}"):
            got = c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            ok = any(x["type"] == "Established" and x["status"] == "True"
                     for x in (got.get("status") or {}).get("conditions") or [])
            if ok:
                try:
                    c.get(path)                 # served: the grouper's discovery will find it
                except ApiError:
                    return False
            return ok
        wait_for(established, 30, what=f"CRD {plural}.{group}")
    return True


def _pods(c, ns, selector=""):
    return c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})["items"]


def _podgroup(c, ns, name, timeout=30):
    def get():
        try:
            return c.get(f"{PG.format(ns=ns)}/{name}")
        except ApiError:
            return None
    return wait_for(get, timeout, what=f"PodGroup {name}")


def _all_bound(c, ns, selector, n):
    def check():
        pods = _pods(c, ns, selector)
        return pods if len(pods) == n and all(p["spec"].get("nodeName") for p in pods) else None
    return wait_for(check, 60, what=f"{n} pods {selector} bound")


def _ref(obj):
    m = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": m["name"], "uid": m["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _subgroups(pg):
    return [(s["name"], s.get("minMember"), s.get("parent")) for s in pg["spec"].get("subGroups") or []]


def test_pytorchjob_master_worker_subgroups_gang(kai_client, kai_scheduler, kube_namespace, owner_crds):
    c, ns = kai_client, kube_namespace
    job = c.post(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs", {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": "bert", "labels": {"kai.scheduler/queue": "default-queue"}},
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}}})
    uid = job["metadata"]["uid"]

    def member(role, index):
        name = f"bert-{role}-{index}"
        p = pod_manifest(name, gpus=1, labels={"app": "bert", "training.kubeflow.org/job-name": "bert",
                                               "training.kubeflow.org/replica-type": role,
                                               "training.kubeflow.org/replica-index": str(index),
                                               "training.kubeflow.org/job-role": role})
        p["metadata"]["ownerReferences"] = [_ref(job)]
        c.post(f"/api/v1/namespaces/{ns}/pods", p)
        return name

    member("master", 0)
    member("worker", 0)
    member("worker", 1)
    pg = _podgroup(c, ns, f"pg-bert-{uid}")
    assert pg["spec"]["minMember"] == 4 and pg["spec"]["queue"] == "default-queue"
    assert _subgroups(pg) == [("master", 1, None), ("worker", 3, None)]
    assert pg["metadata"]["ownerReferences"][0]["uid"] == uid
    wait_for(lambda: all(p["metadata"].get("labels", {}).get("kai.scheduler/subgroup-name")
                         for p in _pods(c, ns, "app=bert")) or None, 30, what="subgroup labels")
    time.sleep(2.0)                      # several cycles: the worker SubGroup is one pod short
    assert not [p for p in _pods(c, ns, "app=bert") if p["spec"].get("nodeName")], "partial gang was bound"
    member("worker", 2)
    pods = _all_bound(c, ns, "app=bert", 4)
    assert {p["metadata"]["name"]: p["metadata"]["labels"]["kai.scheduler/subgroup-name"] for p in pods} == {
        "bert-master-0": "master", "bert-worker-0": "worker", "bert-worker-1": "worker", "bert-worker-2": "worker"}
    assert {p["metadata"]["annotations"]["pod-group-name"] for p in pods} == {f"pg-bert-{uid}"}


def test_jobset_in_order_one_podgroup_per_replicated_job(kai_client, kai_scheduler, kube_namespace, owner_crds):
    c, ns = kai_client, kube_namespace
    rjobs = [{"name": "driver", "replicas": 1, "template": {"spec": {"parallelism": 1, "completions": 1}}},
             {"name": "workers", "replicas": 2, "template": {"spec": {"parallelism": 2, "completions": 2}}}]
    js = c.post(f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{ns}/jobsets", {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "js"},
        "spec": {"replicatedJobs": rjobs}})
    uid = js["metadata"]["uid"]
    tmpl = pod_manifest("x", gpus=1)["spec"]
    # the JobSet controller's child Jobs; the job-controller creates their pods
    for rj in rjobs:
        for i in range(rj["replicas"]):
            labels = {"app": "js", "jobset.sigs.k8s.io/jobset-name": "js",
                      "jobset.sigs.k8s.io/replicatedjob-name": rj["name"], "jobset.sigs.k8s.io/job-index": str(i)}
            c.post(f"/apis/batch/v1/namespaces/{ns}/jobs", {
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": f"js-{rj['name']}-{i}", "labels": labels, "ownerReferences": [_ref(js)]},
                "spec": {**rj["template"]["spec"],
                         "template": {"metadata": {"labels": labels},
                                      "spec": {**tmpl, "restartPolicy": "Never"}}}})
    workers = _podgroup(c, ns, f"pg-js-{uid}-workers")
    driver = _podgroup(c, ns, f"pg-js-{uid}-driver")
    assert workers["spec"]["minMember"] == 4 and driver["spec"]["minMember"] == 1
    assert workers["metadata"]["ownerReferences"][0]["kind"] == "JobSet"
    pods = _all_bound(c, ns, "app=js", 5)
    by_rj = {}
    for p in pods:
        by_rj.setdefault(p["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"], set()).add(
            p["metadata"]["annotations"]["pod-group-name"])
    assert by_rj == {"driver": {f"pg-js-{uid}-driver"}, "workers": {f"pg-js-{uid}-workers"}}


def test_leaderworkerset_leader_and_workers(kai_client, kai_scheduler, kube_namespace, owner_crds):
    c, ns = kai_client, kube_namespace
    lws = c.post(f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{ns}/leaderworkersets", {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "llm"},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 3}}})
    uid = lws["metadata"]["uid"]
    tmpl = pod_manifest("x", gpus=1)["spec"]
    common = {"app": "llm", "leaderworkerset.sigs.k8s.io/name": "llm", "leaderworkerset.sigs.k8s.io/group-index": "0"}
    leader_labels = {**common, "leaderworkerset.sigs.k8s.io/worker-index": "0", "role": "leader"}
    # the LWS controller's leader StatefulSet (one group), owned by the LWS
    c.post(f"/apis/apps/v1/namespaces/{ns}/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "llm", "ownerReferences": [_ref(lws)]},
        "spec": {"replicas": 1, "serviceName": "llm", "selector": {"matchLabels": {"role": "leader", "app": "llm"}},
                 "template": {"metadata": {"labels": leader_labels}, "spec": tmpl}}})
    leader = wait_for(lambda: next(iter(_pods(c, ns, "role=leader")), None), 30, what="the leader pod")
    assert leader["metadata"]["name"] == "llm-0"
    # ... and the worker StatefulSet, owned by the leader pod (ordinals from 1)
    worker_labels = {**common, "role": "worker"}
    c.post(f"/apis/apps/v1/namespaces/{ns}/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "llm-0", "ownerReferences": [{**_ref({**leader, "apiVersion": "v1", "kind": "Pod"})}]},
        "spec": {"replicas": 2, "serviceName": "llm", "podManagementPolicy": "Parallel", "ordinals": {"start": 1},
                 "selector": {"matchLabels": {"role": "worker", "app": "llm"}},
                 "template": {"metadata": {"labels": worker_labels}, "spec": tmpl}}})
    name = f"pg-llm-{uid}-group-0"
    pg = _podgroup(c, ns, name)
    assert pg["spec"]["minMember"] == 3
    assert _subgroups(pg) == [("leader", 1, None), ("workers", 2, None)]
    assert pg["metadata"]["ownerReferences"][0]["kind"] == "LeaderWorkerSet"
    pods = _all_bound(c, ns, "app=llm", 3)
    assert {p["metadata"]["name"]: (p["metadata"]["annotations"]["pod-group-name"],
                                    p["metadata"]["labels"]["kai.scheduler/subgroup-name"]) for p in pods} == {
        "llm-0": (name, "leader"), "llm-0-1": (name, "workers"), "llm-0-2": (name, "workers")}


def test_ungroupable_pod_gets_an_event_and_is_not_scheduled(kai_client, kai_scheduler, kube_namespace, owner_crds):
    c, ns = kai_client, kube_namespace
    job = c.post(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs", {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "broken"}, "spec": {}})
    p = pod_manifest("broken-master-0", gpus=1)
    p["metadata"]["ownerReferences"] = [_ref(job)]
    c.post(f"/api/v1/namespaces/{ns}/pods", p)

    def warning():
        events = c.get(f"/api/v1/namespaces/{ns}/events")["items"]
        return next((e for e in events if e.get("reason") == "PodGrouperWarning"
                     and e["involvedObject"].get("name") == "broken-master-0"), None)
    ev = wait_for(warning, 30, what="the PodGrouperWarning event")
    assert ev["type"] == "Warning" and "pytorchReplicaSpecs" in ev["message"]
    pod = c.get(f"/api/v1/namespaces/{ns}/pods/broken-master-0")
    assert "pod-group-name" not in (pod["metadata"].get("annotations") or {})
    assert not pod["spec"].get("nodeName")
