"""A gang cut in half (issue 16): the scheduler dies after binding 3 of a gang's 8 pods.

The first scheduler talks to the API server through the fault proxy, which lets the first 3
bindings through and holds the rest; the scheduler is then SIGKILLed and the held bindings
dropped (never sent). A second scheduler, started against the API server directly, either
finishes the gang from its cache, or, when the capacity is gone meanwhile, evicts the
partial gang as stale once its grace period (5 s here) has passed.
"""
from __future__ import annotations

import json
import signal
import time
import uuid

import pytest

from e2e_helpers import SchedulerProcess, ensure, pod_manifest, wait_for
from kai.testing.controlplane import fake_node_manifest
from kai.testing.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

NAME = "kai-gang"
GANG = 8
CUT = 3
GRACE = 5.0


@pytest.fixture
def pool(control_plane, kai_client):
    """Two 4-GPU nodes only this test's pods select."""
    tag = uuid.uuid4().hex[:6]
    names = [f"gang-{tag}-{i}" for i in range(2)]
    for n in names:
        control_plane.create_node(fake_node_manifest(n, gpus=4, labels={"kai-test/pool": tag}))
    control_plane.wait_nodes_ready(names)
    yield tag, names
    for n in names:
        try:
            kai_client.delete(f"/api/v1/nodes/{n}")
        except Exception:   # noqa: BLE001 - already gone
            pass


def _gang(c, ns, tag):
    ensure(c, f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups",
           {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": "g"},
            "spec": {"minMember": GANG, "queue": "default-queue"}})
    for i in range(GANG):
        p = pod_manifest(f"g-{i}", gpus=1, scheduler=NAME, annotations={"pod-group-name": "g"}, labels={"gang": "g"})
        p["spec"]["nodeSelector"] = {"kai-test/pool": tag}
        c.post(f"/api/v1/namespaces/{ns}/pods", p)


def _gang_pods(c, ns):
    return c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "gang=g"})["items"]


def _bound(c, ns):
    return [p for p in _gang_pods(c, ns) if p["spec"].get("nodeName")]


def _cut_after_three(control_plane, kai_cluster, c, ns, tag, tmp_path):
    """Start a scheduler behind the proxy, let 3 bindings through, kill it; returns the proxy."""
    token = json.loads(open(kai_cluster).read())["users"][0]["user"]["token"]
    proxy = FaultProxy(control_plane.server, control_plane.ca_file).start()
    proxy.hold(lambda m, p: m == "POST" and p.endswith("/binding") and f"/namespaces/{ns}/" in p, after=CUT)
    first = SchedulerProcess(proxy.write_kubeconfig(tmp_path / "via-proxy", token), tmp_path / "first.log",
                             "--scheduler-name", NAME)
    try:
        first.wait_ready()
        _gang(c, ns, tag)
        wait_for(lambda: proxy.held() == GANG - CUT, 60, 0.1, "5 bindings held at the proxy")
        first.stop(signal.SIGKILL)
    finally:
        first.stop()
        proxy.stop()                       # held bindings are dropped, never reach the API server
    assert len(_bound(c, ns)) == CUT
    return proxy


def _bindings(control_plane, ns) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in control_plane.audit_events():
        ref = e.get("objectRef") or {}
        if ref.get("subresource") == "binding" and ref.get("namespace") == ns and e["verb"] == "create" \
                and (e.get("responseStatus") or {}).get("code") == 201:
            out[ref["name"]] = out.get(ref["name"], 0) + 1
    return out


def test_next_scheduler_finishes_the_gang(control_plane, kai_client, kai_cluster, kube_namespace, pool, tmp_path):
    c, ns = kai_client, kube_namespace
    tag, _ = pool
    _cut_after_three(control_plane, kai_cluster, c, ns, tag, tmp_path)
    second = SchedulerProcess(kai_cluster, tmp_path / "second.log", "--scheduler-name", NAME)
    try:
        second.wait_ready()
        wait_for(lambda: len(_bound(c, ns)) == GANG, 60, what="the gang finished by the next scheduler")
        assert _bindings(control_plane, ns) == {f"g-{i}": 1 for i in range(GANG)}     # none bound twice
        assert not [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"] if e["reason"] == "FailedBinding"]
    finally:
        second.stop()


def test_partial_gang_that_cannot_finish_is_evicted_after_its_grace(control_plane, kai_client, kai_cluster,
                                                                    kube_namespace, pool, tmp_path):
    c, ns = kai_client, kube_namespace
    tag, nodes = pool
    _cut_after_three(control_plane, kai_cluster, c, ns, tag, tmp_path)
    # meanwhile the free GPUs of the pool are taken (pods placed by hand, no scheduler)
    used = {n: sum(1 for p in _bound(c, ns) if p["spec"]["nodeName"] == n) for n in nodes}
    k = 0
    for n in nodes:
        for _ in range(4 - used[n]):
            blocker = pod_manifest(f"blocker-{k}", gpus=1, scheduler="nobody")
            blocker["spec"]["nodeName"] = n
            c.post(f"/api/v1/namespaces/{ns}/pods", blocker)
            k += 1
    assert k == GANG - CUT
    partial = {p["metadata"]["name"] for p in _bound(c, ns)}
    second = SchedulerProcess(kai_cluster, tmp_path / "second.log", "--scheduler-name", NAME,
                              "--default-staleness-grace-period", f"{GRACE:g}s")
    try:
        second.wait_ready()
        started = time.monotonic()
        wait_for(lambda: not (partial & {p["metadata"]["name"] for p in _gang_pods(c, ns)
                                         if not p["metadata"].get("deletionTimestamp")}),
                 GRACE + 30, 0.2, "the partial gang evicted")
        took = time.monotonic() - started
        assert GRACE - 0.5 <= took <= GRACE + 15, took
        # the binder posts each Evict Event after its DELETE, through the status writer's
        # queue: the last one may land a moment after the pod is gone
        def evict_events():
            return [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"] if e["reason"] == "Evict"]
        wait_for(lambda: {e["involvedObject"]["name"] for e in evict_events()} >= partial, 15, 0.2,
                 "an Evict Event for every evicted pod")
        evicted = evict_events()
        assert {e["involvedObject"]["name"] for e in evicted} == partial
        assert all("evicted by the stalegangeviction action" in e["message"] for e in evicted)
        assert not _bound(c, ns) or all(p["metadata"].get("deletionTimestamp") for p in _bound(c, ns))
    finally:
        second.stop()
