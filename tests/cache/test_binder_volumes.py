"""The binder's volume step (VolumeBinding's PreBind) against a real kube-apiserver and PV
controller: claims bound before the pod, no pod bound when they cannot be, and the scheduler's
assumed volumes released when a binding fails."""
from __future__ import annotations

import queue
import uuid

import msgspec
import pytest

from kai.api.k8s import Pod
from kai.api.storage import ClaimPlan, PersistentVolume
from kai.cache.binder import BIND_FAILED, BIND_OK, Binder
from kai.cache.cluster_state import ClusterState
from kai.cache.kubeclient import ApiError, KubeClient, load_kubeconfig
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration
NODE = "binder-vol-node"


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    c = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    try:
        control_plane.create_node(fake_node_manifest(NODE, gpus=0))
    except Exception as exc:   # noqa: BLE001 - made by an earlier run
        if "409" not in str(exc) and "AlreadyExists" not in str(exc):
            raise
    try:
        c.post("/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "binder-local"},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"})
    except ApiError as exc:
        if exc.status != 409:
            raise
    return c


def _setup(client, ns, pv_claim=None):
    pv = f"bpv-{uuid.uuid4().hex[:8]}"
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "binder-local",
            "hostPath": {"path": "/mnt/x"}}
    if pv_claim:
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": ns, "name": pv_claim}
    client.post("/api/v1/persistentvolumes", {"apiVersion": "v1", "kind": "PersistentVolume",
                                              "metadata": {"name": pv}, "spec": spec})
    claim = client.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "binder-local",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    pod = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}), Pod)
    plan = ClaimPlan(namespace=ns, name="data", uid=claim["metadata"]["uid"], volume=pv)
    return pv, pod, plan


def _result(q: queue.Queue) -> tuple[str, tuple]:
    kind, etype, payload = q.get(timeout=30)
    assert kind == "Binder"
    return etype, payload


def test_claims_are_bound_before_the_pod(client, kube_namespace):
    ns = kube_namespace
    pv, pod, plan = _setup(client, ns)
    events: queue.Queue = queue.Queue()
    binder = Binder(client, events, workers=1, volume_bind_timeout=30)
    try:
        binder.submit_bind(ns, "p", pod.metadata.uid, NODE, volumes=(plan,))
        assert _result(events)[0] == BIND_OK
    finally:
        binder.shutdown()
    assert client.get(f"/api/v1/namespaces/{ns}/pods/p")["spec"]["nodeName"] == NODE
    claim = client.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    assert claim["spec"]["volumeName"] == pv and "pv.kubernetes.io/bind-completed" in claim["metadata"]["annotations"]


def test_no_pod_bound_when_its_volume_cannot_be_and_assumptions_released(client, kube_namespace):
    ns = kube_namespace
    pv, pod, plan = _setup(client, ns, pv_claim="someone-else")
    state = ClusterState()
    state.storage.apply("PersistentVolume", "ADDED", msgspec.convert(
        client.get(f"/api/v1/persistentvolumes/{pv}"), PersistentVolume))
    state.storage.assume(pod.metadata.uid, [plan], NODE)
    events: queue.Queue = queue.Queue()
    binder = Binder(client, events, workers=1, volume_bind_timeout=30)
    try:
        binder.assumed_bind[pod.metadata.uid] = (f"{ns}/p", NODE)
        binder.submit_bind(ns, "p", pod.metadata.uid, NODE, volumes=(plan,))
        etype, payload = _result(events)
    finally:
        binder.shutdown()
    assert etype == BIND_FAILED
    assert "binding volumes of" in payload[3] and "already bound to claim" in payload[3]
    assert not client.get(f"/api/v1/namespaces/{ns}/pods/p")["spec"].get("nodeName")
    assert state.storage.assumed_volumes(plan.key) == [pv]
    binder.apply_result(state, etype, payload)
    assert state.storage.assumed_volumes(plan.key) == []           # free for the next cycle
    assert pod.metadata.uid not in binder.assumed_bind
