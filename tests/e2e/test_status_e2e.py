"""End to end: Queue and PodGroup status, a bad queue's condition and Event, GPU reservation pods.

On kwok nothing reads a GPU through NVML, so the reservation pod's
``run.ai/reserve_for_gpu_index`` annotation is patched by the test (the device's role on a
real node, where KAI's resource-reservation image writes it).
"""
from __future__ import annotations

import threading

import pytest

from e2e_helpers import ensure, play_gpu_device, pod_manifest, queue_manifest, wait_for
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

QUEUES = "/apis/scheduling.run.ai/v2/queues"
PG = "/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
RES_PODS = "/api/v1/namespaces/kai-resource-reservation/pods"


def _pods(client, ns, selector=""):
    return client.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})["items"]


def test_queue_and_podgroup_status_after_a_gang(kai_client, kai_scheduler, kube_namespace):
    c, ns = kai_client, kube_namespace
    ensure(c, QUEUES, queue_manifest("st-parent"))
    ensure(c, QUEUES, queue_manifest("st-child", "st-parent", 1))
    ensure(c, PG.format(ns=ns), {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                                 "metadata": {"name": "gang"}, "spec": {"minMember": 2, "queue": "st-child"}})
    for i in range(2):
        c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"w{i}", gpus=1, annotations={"pod-group-name": "gang"},
                                                             labels={"app": "st-gang"}))
    mem = str(2 * 100 * 2**20)
    want = {"nvidia.com/gpu": "2", "cpu": "200m", "memory": mem}

    def child_status():
        st = c.get(f"{QUEUES}/st-child").get("status") or {}
        return st if st.get("allocated") == want else None
    st = wait_for(child_status, 30, what="st-child status.allocated")
    assert st["requested"] == want
    assert st["allocatedNonPreemptible"]["nvidia.com/gpu"] == "0"        # train priority: preemptible
    assert [x["type"] for x in st["conditions"]] == ["OverQuota"]          # 2 GPUs over a quota of 1
    parent = wait_for(lambda: (c.get(f"{QUEUES}/st-parent").get("status") or {}).get("childQueues") == ["st-child"]
                      and c.get(f"{QUEUES}/st-parent")["status"], 15, what="st-parent status")
    assert parent["allocated"]["nvidia.com/gpu"] == "2"
    assert not parent.get("conditions")                                    # unlimited quota

    def pg_running():
        s = c.get(f"{PG.format(ns=ns)}/gang").get("status") or {}
        return s if s.get("running") == 2 else None
    pg = wait_for(pg_running, 30, what="PodGroup running=2")
    assert pg["phase"] == "Running" and pg["pending"] == 0
    assert pg["resourcesStatus"]["allocated"] == want
    assert pg["resourcesStatus"]["requested"] == want
    # deleting the pods empties the queue again
    for i in range(2):
        c.delete(f"/api/v1/namespaces/{ns}/pods/w{i}")
    wait_for(lambda: (c.get(f"{QUEUES}/st-child").get("status") or {}).get("allocated", {}).get("nvidia.com/gpu")
             == "0", 30, what="st-child allocated back to 0")


def test_orphan_queue_condition_and_event(kai_client, kai_scheduler):
    c = kai_client
    ensure(c, QUEUES, queue_manifest("st-orphan", "st-no-such-parent"))
    try:
        cond = wait_for(lambda: next((x for x in (c.get(f"{QUEUES}/st-orphan").get("status") or {})
                                      .get("conditions") or [] if x["type"] == "Orphan"), None),
                        30, what="Orphan condition")
        assert cond["status"] == "True" and "st-no-such-parent" in cond["message"]
        events = wait_for(lambda: [e for e in c.get("/api/v1/namespaces/default/events", params={
            "fieldSelector": "involvedObject.name=st-orphan"})["items"] if e["type"] == "Warning"],
            15, what="Warning Event on the queue")
        assert "st-no-such-parent" in events[0]["message"]
        assert events[0]["involvedObject"]["kind"] == "Queue"
    finally:
        c.delete(f"{QUEUES}/st-orphan")


@pytest.fixture(scope="module")
def sharing_node(control_plane):
    """A node of its own, so no other test's fraction can share the group."""
    name = "e2e-status-gpu"
    try:
        control_plane.create_node(fake_node_manifest(name, gpus=2, cpu="8", memory="32Gi"))
    except Exception as exc:   # noqa: BLE001 - already there
        if "AlreadyExists" not in str(exc) and "409" not in str(exc):
            raise
    control_plane.wait_nodes_ready([name])
    return name


def test_fraction_pods_share_one_reservation_pod(kai_client, kai_scheduler, kube_namespace, sharing_node):
    c, ns = kai_client, kube_namespace
    uuid = "GPU-8d2e5c4b-1111-4222-8333-444455556666"
    stop = threading.Event()
    t = play_gpu_device(c, uuid, lambda n: n == sharing_node, stop)
    try:
        for n in ("half-a", "half-b"):
            m = pod_manifest(n, gpus=0, annotations={"gpu-fraction": "0.5"}, labels={"app": "st-halves"})
            m["spec"]["nodeSelector"] = {"kubernetes.io/hostname": sharing_node}
            c.post(f"/api/v1/namespaces/{ns}/pods", m)

        def bound():
            pods = _pods(c, ns, "app=st-halves")
            return len(pods) == 2 and all(p["spec"].get("nodeName") for p in pods) and pods
        pods = wait_for(bound, 40, what="both halves bound")
        groups = {p["metadata"]["labels"]["runai-gpu-group"] for p in pods}
        assert len(groups) == 1
        group = groups.pop()
        res = [p for p in c.get(RES_PODS, params={"labelSelector": f"runai-gpu-group={group}"})["items"]
               if not p["metadata"].get("deletionTimestamp")]
        assert len(res) == 1
        assert res[0]["spec"]["nodeName"] == sharing_node
        assert res[0]["metadata"]["labels"]["app"] == "kai-resource-reservation"
        for p in pods:
            prefix = p["metadata"]["annotations"]["runai/shared-gpu-configmap"]
            cm = c.get(f"/api/v1/namespaces/{ns}/configmaps/{prefix}-0")
            assert cm["data"]["NVIDIA_VISIBLE_DEVICES"] == uuid
            assert cm["data"]["GPU_PORTION"] == "0.5"
        # both fraction pods go: the reservation pod goes too
        for p in pods:
            c.delete(f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}")
        wait_for(lambda: not [p for p in c.get(RES_PODS, params={"labelSelector": f"runai-gpu-group={group}"})
                              ["items"]], 40, what="the reservation pod deleted")
    finally:
        stop.set()
        t.join(2)
