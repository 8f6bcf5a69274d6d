"""The binder against a real kube-apiserver: pods/binding, 409 is final, no double bind, eviction."""
from __future__ import annotations

import queue
import threading
import time

import msgspec
import pytest

from kai.api.k8s import Pod
from kai.cache.binder import BIND_FAILED, BIND_OK, Binder
from kai.cache.kubeclient import ApiError, KubeClient, load_kubeconfig

pytestmark = pytest.mark.integration


def _pod(name: str, finalizer: bool = False) -> dict:
    meta: dict = {"name": name}
    if finalizer:
        meta["finalizers"] = ["kai.test/hold"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"schedulerName": "kai-binder-test", "containers": [{"name": "c", "image": "busybox"}],
                     "tolerations": [{"operator": "Exists"}]}}


def _result(q: queue.Queue, timeout: float = 20.0) -> tuple[str, tuple]:
    kind, etype, payload = q.get(timeout=timeout)
    assert kind == "Binder"
    return etype, payload


class Latest:
    """``latest_pod`` backed by direct GETs (the controller uses its informer store)."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.override: dict[str, Pod] = {}

    def __call__(self, key: str):
        if key in self.override:
            return self.override[key]
        ns, name = key.split("/", 1)
        try:
            return self.client.get(f"/api/v1/namespaces/{ns}/pods/{name}", Pod)
        except ApiError:
            return None


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    return KubeClient(load_kubeconfig(control_plane.kubeconfig))


@pytest.fixture(scope="module")
def nodes(control_plane) -> list[str]:
    from kai.testing.controlplane import fake_node_manifest
    names = ["binder-node-0", "binder-node-1"]
    for n in names:
        control_plane.create_node(fake_node_manifest(n, gpus=0))
    return names


def test_bind_posts_binding_and_409_is_final(client, kube_namespace, nodes):
    ns = kube_namespace
    created = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", _pod("a")), Pod)
    events: queue.Queue = queue.Queue()
    latest = Latest(client)
    binder = Binder(client, events, workers=2, latest_pod=latest)
    try:
        binder.submit_bind(ns, "a", created.metadata.uid, nodes[0])
        assert _result(events) == (BIND_OK, (created.metadata.uid, f"{ns}/a", nodes[0], ""))
        assert client.get(f"/api/v1/namespaces/{ns}/pods/a", Pod).spec.node_name == nodes[0]
        # a second decision for the same pod (the cache hid the binding): the API's 409 is final,
        # the pod stays where it is and nothing is retried
        latest.override[f"{ns}/a"] = created            # pretend the cache still shows it unbound
        binder.submit_bind(ns, "a", created.metadata.uid, nodes[1])
        etype, payload = _result(events)
        assert etype == BIND_FAILED and "already assigned" in payload[3]
        assert client.get(f"/api/v1/namespaces/{ns}/pods/a", Pod).spec.node_name == nodes[0]
    finally:
        binder.shutdown()


def test_never_binds_a_pod_the_cache_shows_bound(client, kube_namespace, nodes):
    ns = kube_namespace
    created = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", _pod("b")), Pod)
    events: queue.Queue = queue.Queue()
    latest = Latest(client)
    bound = msgspec.structs.replace(created, spec=msgspec.structs.replace(created.spec, node_name=nodes[1]))
    latest.override[f"{ns}/b"] = bound
    binder = Binder(client, events, workers=1, latest_pod=latest)
    try:
        binder.submit_bind(ns, "b", created.metadata.uid, nodes[0])
        etype, payload = _result(events)
        assert etype == BIND_FAILED and "already on node" in payload[3]
        assert client.get(f"/api/v1/namespaces/{ns}/pods/b", Pod).spec.node_name == ""
    finally:
        binder.shutdown()


def test_evict_sets_disruption_target_then_deletes(client, kube_namespace, nodes):
    ns = kube_namespace
    created = msgspec.convert(client.post(f"/api/v1/namespaces/{ns}/pods", _pod("c")), Pod)
    events: queue.Queue = queue.Queue()
    binder = Binder(client, events, workers=1, latest_pod=Latest(client))
    seen: list[tuple[str, dict]] = []
    try:
        binder.submit_bind(ns, "c", created.metadata.uid, nodes[0])
        assert _result(events)[0] == BIND_OK
        rv = client.get(f"/api/v1/namespaces/{ns}/pods/c")["metadata"]["resourceVersion"]

        def watch() -> None:     # what the pod goes through, as any watcher sees it
            for ev in client.watch(f"/api/v1/namespaces/{ns}/pods", rv, 15):
                seen.append((ev.type, msgspec.json.decode(ev.object)))
                if ev.type == "DELETED":
                    return
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        time.sleep(0.3)
        binder.submit_evict(ns, "c", created.metadata.uid, "Pod c was evicted by the reclaim action")
        t.join(16)
        types = [e for e, _ in seen]
        assert "DELETED" in types, types
        first_deleting = next(o for e, o in seen if o["metadata"].get("deletionTimestamp") or e == "DELETED")
        conds = {c["type"]: c for c in first_deleting["status"].get("conditions", [])}
        assert conds["DisruptionTarget"]["status"] == "True"
        assert "reclaim" in conds["DisruptionTarget"]["message"]
        assert events.empty()            # no EVICT_FAILED
    finally:
        binder.shutdown()
