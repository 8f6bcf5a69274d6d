"""The binder's DRA step (kai.cache.dra_binding) against a real kube-apiserver: finalizer, allocation
and reservedFor written with resourceVersion preconditions, conflicts retried, a claim allocated
elsewhere refused, and nothing half done when a claim or the pod binding fails."""
from __future__ import annotations

import queue

import pytest

from kai.cache.binder import BIND_FAILED, BIND_OK, Binder
from kai.cache.dra_binding import FINALIZER, ClaimBindError, ClaimWrite, release_claims, reserve_claims
from kai.cache.kubeclient import KubeClient, load_kubeconfig

pytestmark = pytest.mark.integration

RES = "/apis/resource.k8s.io/v1"


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    return KubeClient(load_kubeconfig(control_plane.kubeconfig))


def _alloc(node: str, device: str = "gpu-0") -> dict:
    return {"devices": {"results": [{"request": "gpu", "driver": "gpu.example.com", "pool": node, "device": device}]},
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}


def _claim(client, ns: str, name: str, allocation: dict | None = None, reserved: list[dict] = ()) -> dict:
    obj = client.post(f"{RES}/namespaces/{ns}/resourceclaims", {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]}}})
    if allocation is not None:
        obj = client.patch(f"{RES}/namespaces/{ns}/resourceclaims/{name}/status",
                           {"status": {"allocation": allocation, "reservedFor": list(reserved)}})
    return obj


def _pod(client, ns: str, name: str) -> str:
    """A pod (never scheduled) whose uid can stand in reservedFor: the resourceclaim-controller
    drops entries of pods that do not exist (and then deallocates the claim)."""
    return client.post(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}})["metadata"]["uid"]


def _get(client, ns, name) -> dict:
    return client.get(f"{RES}/namespaces/{ns}/resourceclaims/{name}")


def test_new_allocation_written_then_undone(client, kube_namespace):
    ns = kube_namespace
    _claim(client, ns, "c")
    uid = _pod(client, ns, "p")
    done = reserve_claims(client, "p", uid, [ClaimWrite(ns, "c", _alloc("n0"))])
    got = _get(client, ns, "c")
    assert FINALIZER in got["metadata"]["finalizers"]
    assert got["status"]["allocation"]["devices"]["results"][0]["device"] == "gpu-0"
    assert got["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["n0"]
    assert [r["uid"] for r in got["status"]["reservedFor"]] == [uid]
    assert done[0].allocated and done[0].finalizer and done[0].reserved
    # written again (a retried bind): nothing changes
    again = reserve_claims(client, "p", uid, [ClaimWrite(ns, "c", _alloc("n0"))])
    assert not (again[0].allocated or again[0].reserved)
    assert _get(client, ns, "c")["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]
    release_claims(client, uid, done)
    back = _get(client, ns, "c")
    assert back["status"].get("allocation") is None and not back["status"].get("reservedFor")
    assert FINALIZER not in (back["metadata"].get("finalizers") or [])


def test_allocated_claim_only_gets_the_pod_in_reserved_for(client, kube_namespace):
    ns = kube_namespace
    a, b = _pod(client, ns, "a"), _pod(client, ns, "b")
    _claim(client, ns, "shared", _alloc("n1"), [{"resource": "pods", "name": "a", "uid": a}])
    done = reserve_claims(client, "b", b, [ClaimWrite(ns, "shared", None)])
    got = _get(client, ns, "shared")
    assert [r["uid"] for r in got["status"]["reservedFor"]] == [a, b]
    assert not done[0].allocated and not done[0].finalizer
    release_claims(client, b, done)
    got = _get(client, ns, "shared")
    assert [r["uid"] for r in got["status"]["reservedFor"]] == [a]
    assert got["status"]["allocation"] is not None                  # someone else's allocation stays


def test_allocated_elsewhere_fails_and_undoes_the_earlier_claims(client, kube_namespace):
    ns = kube_namespace
    x, p = _pod(client, ns, "x"), _pod(client, ns, "p")
    _claim(client, ns, "first")
    _claim(client, ns, "taken", _alloc("n0", "gpu-7"), [{"resource": "pods", "name": "x", "uid": x}])
    with pytest.raises(ClaimBindError, match="taken got allocated elsewhere"):
        reserve_claims(client, "p", p, [ClaimWrite(ns, "first", _alloc("n0")),
                                        ClaimWrite(ns, "taken", _alloc("n0", "gpu-1"))])
    first = _get(client, ns, "first")
    assert first["status"].get("allocation") is None and not first["status"].get("reservedFor")
    assert FINALIZER not in (first["metadata"].get("finalizers") or [])
    assert [r["uid"] for r in _get(client, ns, "taken")["status"]["reservedFor"]] == [x]


def test_a_claim_no_longer_allocated_is_refused(client, kube_namespace):
    ns = kube_namespace
    _claim(client, ns, "gone")
    with pytest.raises(ClaimBindError, match="no longer allocated"):
        reserve_claims(client, "p", "uid-p", [ClaimWrite(ns, "gone", None)])
    with pytest.raises(ClaimBindError, match="not found"):
        reserve_claims(client, "p", "uid-p", [ClaimWrite(ns, "missing", _alloc("n0"))])


def test_a_concurrent_change_is_a_conflict_and_is_retried(client, kube_namespace):
    ns = kube_namespace
    _claim(client, ns, "busy")

    class Racing(KubeClient):
        """Changes the claim (a label) right before kai's first status write: its resourceVersion
        precondition fails with 409 and the step reads the claim again."""
        raced = False

        def patch(self, path, body, kind="merge"):
            if path.endswith("/status") and not Racing.raced:
                Racing.raced = True
                client.patch(path[: -len("/status")], {"metadata": {"labels": {"touched": "yes"}}})
            return super().patch(path, body, kind)

    racing = Racing(client.creds)
    uid = _pod(client, ns, "p")
    done = reserve_claims(racing, "p", uid, [ClaimWrite(ns, "busy", _alloc("n0"))])
    got = _get(client, ns, "busy")
    assert Racing.raced and done[0].allocated and done[0].finalizer
    assert got["metadata"]["labels"] == {"touched": "yes"}            # the other writer's change survives
    assert got["status"]["allocation"] is not None and [r["uid"] for r in got["status"]["reservedFor"]] == [uid]


def test_binder_rolls_the_claims_back_when_the_binding_fails(client, kube_namespace):
    """The pod is already bound elsewhere: the binding answers 409, the claim written before it
    is undone and BIND_FAILED is reported."""
    ns = kube_namespace
    _claim(client, ns, "c")
    pod = client.post(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"schedulerName": "kai-binder-test", "nodeName": "somewhere-else",
                 "containers": [{"name": "c", "image": "busybox"}]}})
    uid = pod["metadata"]["uid"]
    events: queue.Queue = queue.Queue()
    binder = Binder(client, events, workers=1)
    try:
        binder.submit_bind(ns, "p", uid, "n0", claims=[ClaimWrite(ns, "c", _alloc("n0"))])
        kind, etype, payload = events.get(timeout=30)
    finally:
        binder.shutdown()
    assert (kind, etype) == ("Binder", BIND_FAILED) and etype != BIND_OK
    got = _get(client, ns, "c")
    assert got["status"].get("allocation") is None and not got["status"].get("reservedFor")
    assert FINALIZER not in (got["metadata"].get("finalizers") or [])


def test_the_informer_copy_is_read_first_and_a_stale_one_costs_a_conflict(client, kube_namespace):
    """A current cached claim saves the read; a stale one (another writer changed the claim
    since) fails the precondition and the API's copy is read; a cached copy that would refuse
    (allocated elsewhere) is checked against the API's before refusing."""
    import msgspec as ms

    from kai.api.dra import ResourceClaim
    ns = kube_namespace
    fresh = ms.convert(_claim(client, ns, "fresh"), ResourceClaim)
    stale = ms.convert(_claim(client, ns, "stale"), ResourceClaim)
    client.patch(f"{RES}/namespaces/{ns}/resourceclaims/stale", {"metadata": {"labels": {"x": "y"}}})
    wrong = ms.convert(_claim(client, ns, "wrong"), ResourceClaim)
    wrong = ms.structs.replace(wrong, status=ms.convert({"allocation": _alloc("n9", "gpu-9")},
                                                        type(wrong.status)))
    uid = _pod(client, ns, "p")

    class Counting(KubeClient):
        gets = 0

        def get(self, path, type=None, params=None):
            Counting.gets += 1
            return super().get(path, type, params)

    counting = Counting(client.creds)
    reserve_claims(counting, "p", uid, [ClaimWrite(ns, "fresh", _alloc("n0"), fresh)])
    assert Counting.gets == 0
    reserve_claims(counting, "p", uid, [ClaimWrite(ns, "stale", _alloc("n0"), stale)])
    assert Counting.gets == 1
    reserve_claims(counting, "p", uid, [ClaimWrite(ns, "wrong", _alloc("n0"), wrong)])
    assert Counting.gets == 2
    for name in ("fresh", "stale", "wrong"):
        got = _get(client, ns, name)
        assert got["status"]["allocation"]["devices"]["results"][0]["pool"] == "n0"
        assert FINALIZER in got["metadata"]["finalizers"]
    assert _get(client, ns, "stale")["metadata"]["labels"] == {"x": "y"}     # the other writer's change kept
