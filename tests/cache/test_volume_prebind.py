"""kai.cache.volume_prebind against a real API server and the real PV controller: a static
binding completes, a dynamic provisioning completes once a provisioner acts on selected-node,
and every failure (PV taken, no provisioner, pod deleted) undoes the attempt's own writes."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from kai.api.storage import ClaimPlan
from kai.cache.kubeclient import ApiError, KubeClient, load_kubeconfig
from kai.cache.volume_prebind import VolumeBindError, bind_pod_volumes
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

SELECTED = "volume.kubernetes.io/selected-node"
NODE = "prebind-node-0"


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    c = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    try:
        control_plane.create_node(fake_node_manifest(NODE, gpus=0))
    except Exception as exc:   # noqa: BLE001 - another test module made it
        if "409" not in str(exc) and "AlreadyExists" not in str(exc):
            raise
    for name, prov in (("prebind-local", "kubernetes.io/no-provisioner"), ("prebind-fake", "kai.test/fake")):
        try:
            c.post("/apis/storage.k8s.io/v1/storageclasses", {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
                "provisioner": prov, "volumeBindingMode": "WaitForFirstConsumer"})
        except ApiError as exc:
            if exc.status != 409:
                raise
    return c


def make_pv(client, cls="prebind-local", node=NODE, claim=None) -> str:
    name = f"pv-{uuid.uuid4().hex[:8]}"
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
            "local": {"path": "/mnt/x"}, "persistentVolumeReclaimPolicy": "Retain",
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
    if claim is not None:
        spec["claimRef"] = claim
    client.post("/api/v1/persistentvolumes", {"apiVersion": "v1", "kind": "PersistentVolume",
                                              "metadata": {"name": name}, "spec": spec})
    return name


def make_claim(client, ns, name, cls="prebind-local") -> ClaimPlan:
    got = client.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                 "resources": {"requests": {"storage": "1Gi"}}}})
    return ClaimPlan(namespace=ns, name=name, uid=got["metadata"]["uid"])


def make_pod(client, ns, claims) -> str:
    got = client.post(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                             for i, c in enumerate(claims)]}})
    return got["metadata"]["uid"]


def claim(client, p: ClaimPlan) -> dict:
    return client.get(f"/api/v1/namespaces/{p.namespace}/persistentvolumeclaims/{p.name}")


def test_static_binding_completes(client, kube_namespace):
    ns = kube_namespace
    c = make_claim(client, ns, "data")
    pv = make_pv(client)
    uid = make_pod(client, ns, ["data"])
    t0 = time.monotonic()
    bind_pod_volumes(client, ns, "p", uid, NODE, [ClaimPlan(namespace=ns, name="data", uid=c.uid, volume=pv)], 30)
    got = claim(client, c)
    assert got["spec"]["volumeName"] == pv and "pv.kubernetes.io/bind-completed" in got["metadata"]["annotations"]
    vol = client.get(f"/api/v1/persistentvolumes/{pv}")
    assert vol["spec"]["claimRef"]["uid"] == c.uid
    assert vol["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert time.monotonic() - t0 < 20


def test_provisioning_completes_when_the_provisioner_acts(client, kube_namespace):
    ns = kube_namespace
    c = make_claim(client, ns, "data", cls="prebind-fake")
    uid = make_pod(client, ns, ["data"])
    stop = threading.Event()

    def provisioner():          # what an external provisioner does on selected-node
        while not stop.is_set():
            got = claim(client, c)
            if got["metadata"].get("annotations", {}).get(SELECTED) == NODE:
                make_pv(client, cls="prebind-fake", claim={"kind": "PersistentVolumeClaim", "namespace": ns,
                                                           "name": "data", "uid": c.uid})
                return
            time.sleep(0.1)

    t = threading.Thread(target=provisioner, daemon=True)
    t.start()
    try:
        bind_pod_volumes(client, ns, "p", uid, NODE, [ClaimPlan(namespace=ns, name="data", uid=c.uid)], 30)
    finally:
        stop.set()
        t.join(5)
    got = claim(client, c)
    assert got["metadata"]["annotations"][SELECTED] == NODE and got["spec"]["volumeName"]


def test_taken_volume_fails_and_undoes_earlier_writes(client, kube_namespace):
    ns = kube_namespace
    first = make_claim(client, ns, "first", cls="prebind-fake")        # no provisioner acts: stays unbound
    second = make_claim(client, ns, "second")
    taken = make_pv(client, claim={"kind": "PersistentVolumeClaim", "namespace": ns, "name": "someone-else"})
    uid = make_pod(client, ns, ["first", "second"])
    plans = [ClaimPlan(namespace=ns, name="first", uid=first.uid),
             ClaimPlan(namespace=ns, name="second", uid=second.uid, volume=taken)]
    with pytest.raises(VolumeBindError, match="already bound to claim"):
        bind_pod_volumes(client, ns, "p", uid, NODE, plans, 30)
    assert SELECTED not in (claim(client, first)["metadata"].get("annotations") or {})
    assert client.get(f"/api/v1/persistentvolumes/{taken}")["spec"]["claimRef"]["name"] == "someone-else"


def test_timeout_undoes_selected_node(client, kube_namespace):
    ns = kube_namespace
    c = make_claim(client, ns, "data", cls="prebind-fake")
    uid = make_pod(client, ns, ["data"])
    t0 = time.monotonic()
    with pytest.raises(VolumeBindError, match="timed out after 1.5s"):
        bind_pod_volumes(client, ns, "p", uid, NODE, [ClaimPlan(namespace=ns, name="data", uid=c.uid)], 1.5)
    assert 1.5 <= time.monotonic() - t0 < 10
    assert SELECTED not in (claim(client, c)["metadata"].get("annotations") or {})


def test_deleted_pod_ends_the_wait(client, kube_namespace):
    ns = kube_namespace
    c = make_claim(client, ns, "data", cls="prebind-fake")
    uid = make_pod(client, ns, ["data"])
    threading.Timer(0.5, lambda: client.delete(f"/api/v1/namespaces/{ns}/pods/p",
                                               {"gracePeriodSeconds": 0})).start()
    with pytest.raises(VolumeBindError, match="pod does not exist any more"):
        bind_pod_volumes(client, ns, "p", uid, NODE, [ClaimPlan(namespace=ns, name="data", uid=c.uid)], 30)
    assert SELECTED not in (claim(client, c)["metadata"].get("annotations") or {})


def test_replaced_claim_is_refused(client, kube_namespace):
    ns = kube_namespace
    make_claim(client, ns, "data")
    pv = make_pv(client)
    uid = make_pod(client, ns, ["data"])
    stale = ClaimPlan(namespace=ns, name="data", uid="not-the-uid", volume=pv)
    with pytest.raises(VolumeBindError, match="was replaced"):
        bind_pod_volumes(client, ns, "p", uid, NODE, [stale], 10)
    assert "claimRef" not in client.get(f"/api/v1/persistentvolumes/{pv}")["spec"]


class _RacingClient:
    """The real client, with another writer (as the PV controller adding its provisioner
    annotations) updating the claim just before kai's first patch of it: a real 409."""

    def __init__(self, client, path: str) -> None:
        self._client, self._path, self.raced = client, path, 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def patch(self, path, body, *args, **kwargs):
        if path == self._path and not self.raced:
            self.raced += 1
            self._client.patch(path, {"metadata": {"annotations": {"example.com/other-writer": "x"}}})
        return self._client.patch(path, body, *args, **kwargs)


def test_undo_reads_again_after_a_conflicting_update(client, kube_namespace):
    from kai.cache.volume_prebind import _undo
    ns = kube_namespace
    c = make_claim(client, ns, "data", cls="prebind-fake")
    path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data"
    client.patch(path, {"metadata": {"annotations": {SELECTED: NODE}}})
    racing = _RacingClient(client, path)
    assert _undo(racing, [ClaimPlan(namespace=ns, name="data", uid=c.uid)], NODE) == []
    assert racing.raced == 1
    annotations = claim(client, c)["metadata"].get("annotations") or {}
    assert SELECTED not in annotations and annotations["example.com/other-writer"] == "x"
