"""End to end: volumes with the real ``kai scheduler`` (chart RBAC), the PV controller, the
StatefulSet and ephemeral volume controllers, on kwok nodes.

- a StatefulSet with volumeClaimTemplates on a WaitForFirstConsumer local-storage class with
  static PVs: each replica lands on the node of the PV its claim is bound to;
- a generic ephemeral volume: the controller creates the claim, kai binds it and the pod;
- dynamic provisioning: kai sets the claim's selected-node, a stand-in provisioner creates the
  PV there, and only then is the pod bound;
- a pod whose claim does not exist waits with the claim named; a ConfigMap it needs, likewise.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from e2e_helpers import ensure, wait_for

pytestmark = pytest.mark.integration

NODES = ("e2e-gpu-0", "e2e-gpu-1")
SELECTED = "volume.kubernetes.io/selected-node"


def _sc(client, name, provisioner):
    ensure(client, "/apis/storage.k8s.io/v1/storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
        "provisioner": provisioner, "volumeBindingMode": "WaitForFirstConsumer"})


def _pv(client, node, cls, tag, claim=None, size="1Gi") -> str:
    name = f"e2e-pv-{uuid.uuid4().hex[:8]}"
    spec = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
            "local": {"path": f"/mnt/{name}"}, "persistentVolumeReclaimPolicy": "Retain",
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
    if claim:
        spec["claimRef"] = claim
    client.post("/api/v1/persistentvolumes", {"apiVersion": "v1", "kind": "PersistentVolume",
                                              "metadata": {"name": name, "labels": {"e2e-volumes": tag}},
                                              "spec": spec})
    return name


@pytest.fixture
def tag(kai_client):
    t = uuid.uuid4().hex[:8]
    yield t
    for pv in kai_client.get("/api/v1/persistentvolumes", params={"labelSelector": f"e2e-volumes={t}"})["items"]:
        try:
            kai_client.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
        except Exception:   # noqa: BLE001 - cleanup is best effort
            pass


def _container(mounts):
    return {"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "volumeMounts": [{"name": m, "mountPath": f"/{m}"} for m in mounts]}


def _pod_spec(mounts, volumes):
    return {"schedulerName": "kai-scheduler", "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}], "containers": [_container(mounts)], "volumes": volumes}


def _pv_node(pv: dict) -> str:
    return pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]


def test_statefulset_on_local_static_pvs(kai_client, kai_scheduler, kube_namespace, tag):
    c, ns = kai_client, kube_namespace
    _sc(c, "e2e-local", "kubernetes.io/no-provisioner")
    # one PV on the first node, two on the second: three replicas must follow their PVs
    _pv(c, NODES[0], "e2e-local", tag)
    _pv(c, NODES[1], "e2e-local", tag)
    _pv(c, NODES[1], "e2e-local", tag)
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}}, "spec": _pod_spec(["data"], [])},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"], "storageClassName": "e2e-local",
                        "resources": {"requests": {"storage": "1Gi"}}}}]}}
    c.post(f"/apis/apps/v1/namespaces/{ns}/statefulsets", sts)

    def placed():
        pods = c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "app=db"})["items"]
        return len(pods) == 3 and all(p["spec"].get("nodeName") for p in pods) and pods

    pods = wait_for(placed, 60, what="three replicas bound")
    seen_pvs = set()
    for p in pods:
        claim = c.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data-{p['metadata']['name']}")
        assert claim["status"]["phase"] == "Bound"
        pv = c.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
        assert _pv_node(pv) == p["spec"]["nodeName"], (p["metadata"]["name"], pv["metadata"]["name"])
        seen_pvs.add(pv["metadata"]["name"])
    assert len(seen_pvs) == 3
    assert sorted(p["spec"]["nodeName"] for p in pods) == [NODES[0], NODES[1], NODES[1]]


def test_generic_ephemeral_volume(kai_client, kai_scheduler, kube_namespace, tag):
    c, ns = kai_client, kube_namespace
    _sc(c, "e2e-local", "kubernetes.io/no-provisioner")
    pv = _pv(c, NODES[1], "e2e-local", tag)
    vol = {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "e2e-local",
        "resources": {"requests": {"storage": "1Gi"}}}}}}
    c.post(f"/api/v1/namespaces/{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "eph"},
                                              "spec": _pod_spec(["scratch"], [vol])})
    pod = wait_for(lambda: (lambda p: p if p["spec"].get("nodeName") else None)(
        c.get(f"/api/v1/namespaces/{ns}/pods/eph")), 60, what="the pod bound")
    assert pod["spec"]["nodeName"] == NODES[1]
    claim = c.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/eph-scratch")
    assert claim["spec"]["volumeName"] == pv
    assert claim["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]


def test_dynamic_provisioning_waits_for_the_provisioner(kai_client, kai_scheduler, kube_namespace, tag):
    c, ns = kai_client, kube_namespace
    _sc(c, "e2e-fake", "kai.e2e/fake-provisioner")
    c.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "e2e-fake",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    c.post(f"/api/v1/namespaces/{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dyn"},
                                              "spec": _pod_spec(["data"], [
                                                  {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])})
    claim = wait_for(lambda: (lambda x: x if (x["metadata"].get("annotations") or {}).get(SELECTED) else None)(
        c.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")), 60, what="selected-node set")
    node = claim["metadata"]["annotations"][SELECTED]
    time.sleep(2.0)                                    # several cycles: the pod waits for its volume
    assert not c.get(f"/api/v1/namespaces/{ns}/pods/dyn")["spec"].get("nodeName")
    # the provisioner: a PV on the selected node, pre-bound to the claim; the PV controller binds
    _pv(c, node, "e2e-fake", tag, claim={"kind": "PersistentVolumeClaim", "namespace": ns, "name": "data",
                                         "uid": claim["metadata"]["uid"]})
    pod = wait_for(lambda: (lambda p: p if p["spec"].get("nodeName") else None)(
        c.get(f"/api/v1/namespaces/{ns}/pods/dyn")), 60, what="the pod bound after provisioning")
    assert pod["spec"]["nodeName"] == node


def _unschedulable_message(c, ns, name):
    def condition():
        p = c.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        return next((x["message"] for x in p["status"].get("conditions") or []
                     if x["type"] == "PodScheduled" and x["status"] == "False"), None)
    return wait_for(condition, 30, what=f"{name} PodScheduled=False")


def test_missing_claim_and_configmap_wait_named(kai_client, kai_scheduler, kube_namespace):
    c, ns = kai_client, kube_namespace
    c.post(f"/api/v1/namespaces/{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noclaim"},
                                              "spec": _pod_spec(["data"], [
                                                  {"name": "data", "persistentVolumeClaim": {"claimName": "ghost"}}])})
    spec = _pod_spec([], [])
    spec["containers"][0]["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    c.post(f"/api/v1/namespaces/{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nocm"},
                                              "spec": spec})
    assert 'persistentvolumeclaim "ghost" not found' in _unschedulable_message(c, ns, "noclaim")
    assert "Missing required configmaps: [settings]" in _unschedulable_message(c, ns, "nocm")
    c.post(f"/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                    "metadata": {"name": "settings"}, "data": {"k": "v"}})
    wait_for(lambda: c.get(f"/api/v1/namespaces/{ns}/pods/nocm")["spec"].get("nodeName"), 30,
             what="the pod bound once its ConfigMap exists")
