"""Informers against a real kube-apiserver: paged list, watch events, bookmarks, 410 relist."""
from __future__ import annotations

import queue
import time

import pytest

from kai.api.k8s import Pod
from kai.cache.kubeclient import ApiError, KubeClient, load_kubeconfig
from kai.cache.watch import ADDED, DELETED, MODIFIED, SYNCED, Backoff, Informer, Resource
from kai.testing.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.integration


class CountingClient(KubeClient):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.list_pages = 0

    def get(self, path, type=None, params=None, **kw):
        if params and "limit" in params:
            self.list_pages += 1
        return super().get(path, type, params, **kw)


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}}


def _wait(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _drain(q: queue.Queue) -> list[tuple[str, str, str]]:
    out = []
    while True:
        try:
            kind, etype, obj = q.get_nowait()
        except queue.Empty:
            return out
        out.append((kind, etype, obj.metadata.name if obj is not None else ""))


def _fresh(client: KubeClient, path: str) -> dict[str, str]:
    items, _ = client.list(path, Pod)
    return {f"{p.metadata.namespace}/{p.metadata.name}": p.metadata.resource_version for p in items}


def _store_rvs(inf: Informer) -> dict[str, str]:
    return {k: o.metadata.resource_version for k, o in inf.store.items()}


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    return CountingClient(load_kubeconfig(control_plane.kubeconfig))


def test_paged_list_then_watch_events_and_bookmarks(client, kube_namespace):
    ns = kube_namespace
    path = f"/api/v1/namespaces/{ns}/pods"
    for i in range(5):
        client.post(path, _pod(f"p{i}"))
    events: queue.Queue = queue.Queue()
    inf = Informer(client, Resource("Pod", path, Pod), events, page_size=2, watch_timeout=(8, 8))
    pages_before = client.list_pages
    inf.start()
    try:
        assert inf.synced.wait(20)
        assert client.list_pages - pages_before == 3          # 5 pods, 2 per page
        got = _drain(events)
        assert sorted(n for _, t, n in got if t == ADDED) == [f"p{i}" for i in range(5)]
        assert got[-1][1] == SYNCED
        client.post(path, _pod("p5"))
        client.patch(f"{path}/p0", {"metadata": {"labels": {"x": "y"}}})
        client.delete(f"{path}/p1", {"gracePeriodSeconds": 0})
        seen: list = []
        _wait(lambda: seen.extend(_drain(events)) or ("Pod", DELETED, "p1") in seen, what="delete event")
        assert ("Pod", ADDED, "p5") in seen and ("Pod", MODIFIED, "p0") in seen
        # the API server sends a BOOKMARK ~2s before the watch's timeout (and every minute)
        _wait(lambda: inf.stats["bookmarks"] >= 1, timeout=20, what="a bookmark")
        assert _store_rvs(inf) == _fresh(client, path)
        assert inf.stats["relists_410"] == 0
    finally:
        inf.stop()


def test_expired_resource_version_relists_to_a_fresh_cache(client, control_plane, kube_namespace, tmp_path):
    """The API server answers 410 Expired when the informer's resourceVersion was compacted
    away; whether an old one still is depends on the server's history, so the fault proxy
    gives the 410 (as kube-apiserver words it: an ERROR event with a 410 Status)."""
    ns = kube_namespace
    path = f"/api/v1/namespaces/{ns}/pods"
    for i in range(4):
        client.post(path, _pod(f"q{i}"))
    proxy = FaultProxy(control_plane.server, control_plane.ca_file).start()
    via = KubeClient(load_kubeconfig(proxy.write_kubeconfig(tmp_path / "kc", control_plane.token)))
    events: queue.Queue = queue.Queue()
    inf = Informer(via, Resource("Pod", path, Pod), events, page_size=3)
    inf._list()                                  # initial list, synchronously; no watch yet
    _drain(events)
    # changes the informer cannot see: no watch is running
    client.delete(f"{path}/q0", {"gracePeriodSeconds": 0})
    client.post(path, _pod("q9"))
    client.patch(f"{path}/q1", {"metadata": {"labels": {"changed": "yes"}}})
    proxy.set_faults(Faults(expire_watches=1))   # the next watch: 410 Expired
    inf.start()
    try:
        _wait(lambda: inf.stats["relists_410"] >= 1, what="410 relist")
        seen: list = []
        _wait(lambda: seen.extend(_drain(events)) or {("Pod", DELETED, "q0"), ("Pod", ADDED, "q9"),
                                                       ("Pod", MODIFIED, "q1")} <= set(seen),
              what="relist differences as events")
        assert _store_rvs(inf) == _fresh(client, path)
        # and the informer keeps watching after the relist
        client.post(path, _pod("q10"))
        _wait(lambda: seen.extend(_drain(events)) or ("Pod", ADDED, "q10") in seen, what="event after relist")
        assert _store_rvs(inf) == _fresh(client, path)
    finally:
        inf.stop()
        proxy.stop()


def test_optional_kind_missing_crd_is_empty_not_fatal(client):
    events: queue.Queue = queue.Queue()
    inf = Informer(client, Resource("Widget", "/apis/example.invalid/v1/widgets", Pod, optional=True), events)
    inf.start()
    try:
        assert inf.synced.wait(10)
        assert inf.store == {}
    finally:
        inf.stop()


def test_api_errors_carry_status(client):
    with pytest.raises(ApiError) as exc:
        client.get("/api/v1/namespaces/does-not-exist-kai/pods/nope")
    assert exc.value.status == 404 and not exc.value.retryable


def test_backoff_is_bounded():
    b = Backoff(base=0.1, cap=2.0)
    delays = [b.next() for _ in range(20)]
    assert all(0.05 <= d <= 2.0 for d in delays)
