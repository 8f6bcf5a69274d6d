"""GPU reservation pods and device ConfigMaps against a real kube-apiserver.

Nothing on kwok nodes reads a GPU through NVML, so nothing writes the reservation pod's
``run.ai/reserve_for_gpu_index`` annotation: these tests patch it themselves, playing the role
of KAI's resource-reservation image on a real node.
"""
from __future__ import annotations

import queue
import threading
import time

import msgspec
import pytest

from kai.api.k8s import Pod
from kai.cache.binder import BIND_OK, Binder
from kai.cache.kubeclient import ApiError, KubeClient, load_kubeconfig
from kai.cache.reservation import (CONFIGMAP_ANNOTATION, GPU_INDEX_ANNOTATION, NAMESPACE, OWNER_ANNOTATION,
                                   ReservationService, is_reservation_pod)

pytestmark = pytest.mark.integration

RES_PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    return KubeClient(load_kubeconfig(control_plane.kubeconfig))


@pytest.fixture(scope="module")
def node(control_plane) -> str:
    from kai.testing.controlplane import fake_node_manifest
    name = "reservation-node-0"
    try:
        control_plane.create_node(fake_node_manifest(name, gpus=4))
    except Exception as exc:   # noqa: BLE001 - already there
        if "AlreadyExists" not in str(exc) and "409" not in str(exc):
            raise
    return name


def _fraction_pod(name: str, fraction: str = "0.5") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"gpu-fraction": fraction}},
            "spec": {"schedulerName": "kai-reservation-test", "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "c", "image": "busybox"}]}}


def _reservation_pods(client: KubeClient, group: str) -> list[dict]:
    try:
        items = client.get(RES_PODS, params={"labelSelector": f"runai-gpu-group={group}"})["items"]
    except ApiError:
        return []
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _play_device(client: KubeClient, group: str, uuid: str, stop: threading.Event) -> threading.Thread:
    """What the reservation image does on a real node: annotate the pod with its GPU's UUID."""
    def run() -> None:
        while not stop.is_set():
            for p in _reservation_pods(client, group):
                if GPU_INDEX_ANNOTATION not in (p["metadata"].get("annotations") or {}):
                    client.patch(f"{RES_PODS}/{p['metadata']['name']}",
                                 {"metadata": {"annotations": {GPU_INDEX_ANNOTATION: uuid}}})
            time.sleep(0.1)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _latest(client: KubeClient):
    def get(key: str):
        ns, name = key.split("/", 1)
        try:
            return client.get(f"/api/v1/namespaces/{ns}/pods/{name}", Pod)
        except ApiError:
            return None
    return get


def test_two_fractions_share_one_reservation_pod_and_get_the_uuid(client, kube_namespace, node):
    ns = kube_namespace
    group = f"grp-{kube_namespace[-8:]}"
    uuid = "GPU-3f1c2a9e-0000-4000-8000-000000000001"
    rs = ReservationService(client, timeout=20.0, owner="kai-scheduler")
    events: queue.Queue = queue.Queue()
    binder = Binder(client, events, workers=4, latest_pod=_latest(client), reservations=rs)
    stop = threading.Event()
    device = _play_device(client, group, uuid, stop)
    try:
        pods = [msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", _fraction_pod(n)), Pod)
                for n in ("half-a", "half-b")]
        for p in pods:      # both binds in flight at once, into the same group
            binder.submit_bind(ns, p.metadata.name, p.metadata.uid, node, [group], 0.5)
        results = [events.get(timeout=40) for _ in pods]
        assert all(r[1] == BIND_OK for r in results), results
        res = _reservation_pods(client, group)
        assert len(res) == 1, [p["metadata"]["name"] for p in res]
        r = res[0]
        assert r["metadata"]["name"].startswith(f"gpu-reservation-{node}-")
        assert r["metadata"]["labels"] == {"app": "kai-resource-reservation", "runai-gpu-group": group}
        assert r["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
        assert r["metadata"]["annotations"][OWNER_ANNOTATION] == rs.owner == "kai-scheduler"
        assert r["spec"]["nodeName"] == node
        assert r["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert rs.created == 1
        for p in pods:
            got = client.get(f"/api/v1/namespaces/{ns}/pods/{p.metadata.name}")
            assert got["spec"]["nodeName"] == node
            assert got["metadata"]["labels"]["runai-gpu-group"] == group
            prefix = got["metadata"]["annotations"][CONFIGMAP_ANNOTATION]
            cm = client.get(f"/api/v1/namespaces/{ns}/configmaps/{prefix}-0")
            assert cm["data"] == {"NVIDIA_VISIBLE_DEVICES": uuid, "GPU_PORTION": "0.5"}
            assert cm["metadata"]["ownerReferences"][0]["uid"] == p.metadata.uid
        # the sync: the group is still live -> kept; no fraction pod left -> deleted
        res_pod = msgspec.convert(r, Pod)
        assert is_reservation_pod(res_pod)
        assert rs.stale([res_pod], {group}) == []
        assert rs.stale([res_pod], set()) == [r["metadata"]["name"]]
        assert rs.stale([res_pod], set()) == []          # a DELETE is in flight: not issued twice
        # another scheduler's reservation pod (its name annotated) is never ours to delete;
        # one without the annotation (an older kai) is judged as before
        for owner, judged in (("other-scheduler", False), (rs.owner, True), (None, True)):
            ann = dict(r["metadata"]["annotations"])
            ann.pop(OWNER_ANNOTATION, None)
            if owner:
                ann[OWNER_ANNOTATION] = owner
            other = msgspec.convert({**r, "metadata": {**r["metadata"], "name": f"x-{owner}", "annotations": ann}}, Pod)
            assert rs.stale([other], set()) == ([f"x-{owner}"] if judged else []), owner
        rs.delete(r["metadata"]["name"])
        assert _reservation_pods(client, group) == []
    finally:
        stop.set()
        device.join(2)
        binder.shutdown()


def test_timeout_still_binds_without_devices_and_later_pods_do_not_wait(client, kube_namespace, node):
    ns = kube_namespace
    group = f"late-{kube_namespace[-8:]}"
    rs = ReservationService(client, timeout=3.0)   # well above an API round trip on a loaded machine
    events: queue.Queue = queue.Queue()
    binder = Binder(client, events, workers=2, latest_pod=_latest(client), reservations=rs)
    try:
        p = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", _fraction_pod("slow", "0.25")), Pod)
        t0 = time.monotonic()
        binder.submit_bind(ns, "slow", p.metadata.uid, node, [group], 0.25)
        assert events.get(timeout=20)[1] == BIND_OK
        assert time.monotonic() - t0 >= rs.timeout
        assert group in rs.timed_out
        got = client.get(f"/api/v1/namespaces/{ns}/pods/slow")
        assert got["spec"]["nodeName"] == node
        cm = client.get(f"/api/v1/namespaces/{ns}/configmaps/{got['metadata']['annotations'][CONFIGMAP_ANNOTATION]}-0")
        assert cm["data"] == {"NVIDIA_VISIBLE_DEVICES": "", "GPU_PORTION": "0.25"}
        # the reservation pod is kept (it holds the device); the next pod of the group does not wait
        assert len(_reservation_pods(client, group)) == 1
        q = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", _fraction_pod("next", "0.25")), Pod)
        t1 = time.monotonic()
        binder.submit_bind(ns, "next", q.metadata.uid, node, [group], 0.25)
        assert events.get(timeout=20)[1] == BIND_OK
        assert time.monotonic() - t1 < rs.timeout   # did not wait for the UUID again
        assert len(_reservation_pods(client, group)) == 1
    finally:
        binder.shutdown()
        for r in _reservation_pods(client, group):
            rs.delete(r["metadata"]["name"])
