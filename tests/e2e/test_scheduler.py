"""End to end: ``kai scheduler`` as a subprocess against a cluster given by KUBECONFIG.

The quick start flow (queues + a gang bound all at once), a batch/v1 Job grouped by the
pod-grouper and scheduled, a pod that cannot fit reporting why, and the metrics endpoint.
"""
from __future__ import annotations

import time

import pytest

from e2e_helpers import ensure, pod_manifest, queue_manifest, wait_for

pytestmark = pytest.mark.integration

PG = "/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"


def _pods(client, ns, selector=""):
    return client.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})["items"]


def test_quickstart_gang_bound_all_at_once(kai_client, kai_scheduler, kube_namespace):
    c, ns = kai_client, kube_namespace
    ensure(c, "/apis/scheduling.run.ai/v2/queues", queue_manifest("e2e-team-a", "default-parent-queue", 4))
    ensure(c, PG.format(ns=ns), {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                                 "metadata": {"name": "gang"},
                                 "spec": {"minMember": 3, "queue": "e2e-team-a"}})
    # members arrive one by one: nothing may be bound before the whole gang exists
    for i in range(2):
        c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"w{i}", gpus=1, annotations={"pod-group-name": "gang"},
                                                             labels={"app": "gang"}))
    time.sleep(2.0)                      # several cycles (period 0.5 s)
    assert all(not p["spec"].get("nodeName") for p in _pods(c, ns, "app=gang")), "partial gang was bound"
    c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest("w2", gpus=1, annotations={"pod-group-name": "gang"},
                                                         labels={"app": "gang"}))
    bound = wait_for(lambda: [p for p in _pods(c, ns, "app=gang") if p["spec"].get("nodeName")]
                     if all(p["spec"].get("nodeName") for p in _pods(c, ns, "app=gang")) else None,
                     30, what="the gang bound")
    assert len(bound) == 3
    # binpack: the whole gang lands on one node
    assert len({p["spec"]["nodeName"] for p in bound}) == 1


def test_job_grouped_and_scheduled(kai_client, kai_scheduler, kube_namespace):
    c, ns = kai_client, kube_namespace
    tmpl = pod_manifest("x", gpus=1)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "train", "labels": {"kai.scheduler/queue": "default-queue"}},
           "spec": {"parallelism": 2, "completions": 2,
                    "template": {"metadata": {"labels": {"app": "train"}},
                                 "spec": {**tmpl["spec"], "restartPolicy": "Never"}}}}
    created = c.post(f"/apis/batch/v1/namespaces/{ns}/jobs", job)
    uid = created["metadata"]["uid"]

    def all_bound():
        pods = _pods(c, ns, "app=train")
        return len(pods) == 2 and all(p["spec"].get("nodeName") for p in pods) and pods

    pods = wait_for(all_bound, 30, what="the Job's pods bound")
    # KAI's rule for batch Jobs: one PodGroup per pod, pg-<pod>-<job uid>, owned by the Job
    names = {p["metadata"]["annotations"]["pod-group-name"] for p in pods}
    assert names == {f"pg-{p['metadata']['name']}-{uid}" for p in pods}
    for name in names:
        pg = c.get(f"{PG.format(ns=ns)}/{name}")
        assert pg["spec"]["queue"] == "default-queue"
        assert pg["spec"]["priorityClassName"] == "train"
        assert pg["spec"]["minMember"] == 1
        assert pg["metadata"]["ownerReferences"][0]["uid"] == uid


def test_pod_that_cannot_fit_reports_why(kai_client, kai_scheduler, kube_namespace):
    c, ns = kai_client, kube_namespace
    c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest("too-big", gpus=64))

    def condition():
        p = c.get(f"/api/v1/namespaces/{ns}/pods/too-big")
        return next((x for x in p["status"].get("conditions") or []
                     if x["type"] == "PodScheduled" and x["status"] == "False"), None)

    cond = wait_for(condition, 30, what="PodScheduled=False")
    assert cond["reason"] == "Unschedulable"
    assert "64" in cond["message"] and "nvidia.com/gpu" in cond["message"]
    assert not c.get(f"/api/v1/namespaces/{ns}/pods/too-big")["spec"].get("nodeName")
    # the PodGroup made by the pod-grouper carries the scheduling condition, and an Event is recorded
    pgs = c.get(PG.format(ns=ns))["items"]
    assert len(pgs) == 1
    sc = wait_for(lambda: (c.get(PG.format(ns=ns) + "/" + pgs[0]["metadata"]["name"]).get("status") or {})
                  .get("schedulingConditions"), 15, what="schedulingConditions")
    assert sc[0]["type"] == "UnschedulableOnNodePool" and sc[0]["reasons"][0]["message"] == cond["message"]
    evs = wait_for(lambda: [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"]
                            if e["reason"] == "Unschedulable"], 15, what="an Unschedulable event")
    assert evs[0]["source"]["component"] == "kai-scheduler"


def test_metrics_and_health(kai_scheduler):
    assert kai_scheduler.get("/healthz")[0] == 200
    assert kai_scheduler.get("/readyz")[0] == 200
    code, body = kai_scheduler.get("/metrics")
    assert code == 200
    for name in ("kai_e2e_scheduling_latency_milliseconds", "kai_action_scheduling_latency_milliseconds{action=",
                 "kai_queue_fair_share_gpu{queue_name=", "kai_task_bind_latency_milliseconds_bucket",
                 "kai_is_leader 1.0"):
        assert name in body, name


def test_two_fraction_pods_share_one_gpu(kai_client, kai_scheduler, kube_namespace):
    c, ns = kai_client, kube_namespace
    for n in ("half-a", "half-b"):
        c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(n, gpus=0, annotations={"gpu-fraction": "0.5"},
                                                             labels={"app": "halves"}))

    def bound():
        pods = _pods(c, ns, "app=halves")
        return len(pods) == 2 and all(p["spec"].get("nodeName") and p["metadata"].get("labels", {})
                                      .get("runai-gpu-group") for p in pods) and pods

    pods = wait_for(bound, 30, what="both halves bound and labelled")
    assert len({p["spec"]["nodeName"] for p in pods}) == 1
    assert len({p["metadata"]["labels"]["runai-gpu-group"] for p in pods}) == 1      # one shared GPU


def test_gpu_memory_pod_uses_the_node_gpu_memory_label(kai_client, kai_scheduler, kube_namespace):
    """``gpu-memory`` (MiB) as in KAI's docs: the portion comes from the node's
    ``nvidia.com/gpu.memory`` label, which GPU feature discovery sets (81920 MiB on the fake
    A100 nodes), floored to a multiple of 100 MiB as KAI does: 40960 / 81900 of a GPU."""
    c, ns = kai_client, kube_namespace
    c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest("mem", gpus=0, annotations={"gpu-memory": "40960"},
                                                         labels={"app": "mem"}))

    def bound():
        p = c.get(f"/api/v1/namespaces/{ns}/pods/mem")
        return p["spec"].get("nodeName") and p["metadata"].get("labels", {}).get("runai-gpu-group") and p
    pod = wait_for(bound, 40, what="the gpu-memory pod bound to a shared GPU")
    node = c.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert node["metadata"]["labels"]["nvidia.com/gpu.memory"] == "81920"
    prefix = pod["metadata"]["annotations"]["runai/shared-gpu-configmap"]
    cm = c.get(f"/api/v1/namespaces/{ns}/configmaps/{prefix}-0")
    assert float(cm["data"]["GPU_PORTION"]) == pytest.approx(40960 / 81900, abs=1e-6)
