"""kai.testing.faultproxy against the real control plane: each fault does what it says, the
draws are seeded, and kai's client copes (Retry-After honoured, GETs retried, bounded)."""
from __future__ import annotations

import time

import msgspec
import pytest

from kai.api.k8s import Pod
from kai.cache.kubeclient import ApiError, KubeClient, load_kubeconfig
from kai.testing.faultproxy import FaultProxy, Faults


@pytest.fixture
def proxy(control_plane):
    p = FaultProxy(control_plane.server, control_plane.ca_file, seed=7).start()
    yield p
    p.stop()


def _client(proxy, control_plane, tmp_path, **kw) -> KubeClient:
    return KubeClient(load_kubeconfig(proxy.write_kubeconfig(tmp_path / "kc", control_plane.token)), **kw)


def test_passes_requests_through_and_records_them(proxy, control_plane, tmp_path, kube_namespace):
    c = _client(proxy, control_plane, tmp_path)
    c.post(f"/api/v1/namespaces/{kube_namespace}/configmaps",
           {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}})
    assert c.get(f"/api/v1/namespaces/{kube_namespace}/configmaps/x")["data"] == {"a": "1"}
    recs = proxy.select(contains="/configmaps")
    assert [(r.method, r.status, r.fault) for r in recs] == [("POST", 201, ""), ("GET", 200, "")]
    assert recs[0].user_agent == "kai-scheduler"


def test_429_carries_retry_after_and_gets_are_retried_after_it(proxy, control_plane, tmp_path):
    proxy.set_faults(Faults(p_429=1.0, retry_after=1, max_in_a_row=2))
    c = _client(proxy, control_plane, tmp_path)
    t0 = time.monotonic()
    assert c.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"   # 429, 429, then through
    took = time.monotonic() - t0
    recs = proxy.select(contains="/namespaces/default")
    assert [r.fault for r in recs] == ["429", "429", ""]
    assert recs[1].t - recs[0].t >= 0.95 and recs[2].t - recs[1].t >= 0.95       # Retry-After: 1 honoured
    assert took >= 1.9
    with pytest.raises(ApiError) as exc:        # writes are not retried by the client: the 429 surfaces
        c.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "never"}})
    assert exc.value.status == 429 and exc.value.retry_after == 1.0


def test_503_bounded_then_through(proxy, control_plane, tmp_path):
    proxy.set_faults(Faults(p_503=1.0, max_in_a_row=3))
    c = _client(proxy, control_plane, tmp_path, read_attempts=4)
    assert c.get("/api/v1/namespaces/default")
    assert [r.fault for r in proxy.select(contains="/namespaces/default")] == ["503", "503", "503", ""]
    proxy.set_faults(Faults(p_503=1.0, max_in_a_row=10))
    with pytest.raises(ApiError) as exc:
        _client(proxy, control_plane, tmp_path, read_attempts=2).get("/api/v1/namespaces/kube-system")
    assert exc.value.status == 503


def test_lost_answer_the_write_happened(proxy, control_plane, tmp_path, kube_namespace):
    proxy.set_faults(Faults(p_lost=1.0, max_in_a_row=1))
    c = _client(proxy, control_plane, tmp_path)
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    with pytest.raises(ApiError) as exc:
        c.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "lost"}})
    assert exc.value.status == 0                           # a transport error, as after a timeout
    assert proxy.select("POST", "/configmaps")[0].status == 201
    assert c.get(f"{path}/lost")["metadata"]["name"] == "lost"


def _watch(c: KubeClient, path: str, rv: str) -> tuple[list[str], str]:
    names, outcome = [], "ended"
    try:
        for ev in c.watch(path, rv, 5):
            if ev.type in ("ADDED", "MODIFIED"):
                names.append(msgspec.json.decode(ev.object, type=Pod).metadata.name)
            elif ev.type == "ERROR":
                outcome = "error " + bytes(ev.object).decode()
    except ApiError as exc:
        outcome = f"raised {exc.status} {exc.reason}"
    return names, outcome


def _pods(admin: KubeClient, ns: str, n: int) -> str:
    for i in range(n):
        admin.post(f"/api/v1/namespaces/{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"},
                                                     "spec": {"schedulerName": "nobody",
                                                              "containers": [{"name": "c", "image": "x"}]}})
    return admin.get(f"/api/v1/namespaces/{ns}/pods")["metadata"]["resourceVersion"]


def test_watch_reset_truncated_and_expired(proxy, control_plane, tmp_path, kube_namespace):
    admin = KubeClient(load_kubeconfig(control_plane.kubeconfig))
    ns = kube_namespace
    rv0 = admin.get(f"/api/v1/namespaces/{ns}/pods")["metadata"]["resourceVersion"]
    _pods(admin, ns, 6)
    c = _client(proxy, control_plane, tmp_path)
    path = f"/api/v1/namespaces/{ns}/pods"
    proxy.set_faults(Faults(p_reset=1.0, cut_after=3))
    names, outcome = _watch(c, path, rv0)
    assert outcome.startswith("raised 0") and len(names) <= 3      # a reset: a transport error mid-stream
    proxy.set_faults(Faults(p_truncate=1.0, cut_after=3))
    names, outcome = _watch(c, path, rv0)
    assert outcome == "ended" and len(names) <= 3                 # clean end, the half line dropped
    proxy.set_faults(Faults(expire_watches=1))
    names, outcome = _watch(c, path, rv0)
    assert names == [] and '"code": 410' in outcome
    proxy.set_faults(None)
    names, _ = _watch(c, path, rv0)
    assert names[:6] == [f"p{i}" for i in range(6)]


def test_hold_after_n_then_drop(proxy, control_plane, tmp_path, kube_namespace):
    c = _client(proxy, control_plane, tmp_path, read_attempts=1)
    proxy.hold(lambda m, p: m == "POST" and p.endswith("/configmaps"), after=1)
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    c.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "first"}})
    import threading
    errs = []
    t = threading.Thread(target=lambda: errs.append(_try(lambda: c.post(
        path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "second"}}))))
    t.start()
    deadline = time.monotonic() + 5
    while proxy.held() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.held() == 1
    proxy.release()
    t.join(5)
    assert errs and isinstance(errs[0], ApiError)
    names = {i["metadata"]["name"] for i in c.get(path)["items"]}
    assert "first" in names and "second" not in names


def _try(fn):
    try:
        fn()
        return None
    except ApiError as exc:
        return exc


def test_seeded_faults_repeat(control_plane, tmp_path):
    runs = []
    for _ in range(2):
        with FaultProxy(control_plane.server, control_plane.ca_file, Faults(p_429=0.3, p_503=0.3, retry_after=0,
                                                                            max_in_a_row=1), seed=42) as p:
            c = _client(p, control_plane, tmp_path, read_attempts=3)
            for _i in range(10):
                c.get("/api/v1/namespaces/default")
            runs.append([r.fault for r in p.records])
    assert runs[0] == runs[1] and {"429", "503"} <= set(runs[0])
