"""A faulty API server (issue 16): kai scheduling through the fault proxy.

Seeded, bounded faults on every request: up to 50 ms latency, 429 with Retry-After: 1, 503,
writes whose answer is lost after the API server applied them, and watch streams reset or
truncated mid-stream. kai keeps scheduling pods and gangs while pods come and go; no pod is
bound twice (exactly one successful binding per pod reaches the API server); a 429'd binding
is retried no sooner than its Retry-After; and once the faults stop, the scheduler's cache
equals a fresh list.
"""
from __future__ import annotations

import json

import pytest

from e2e_helpers import SchedulerProcess, ensure, pod_manifest, wait_for
from kai.testing.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.integration

NAME = "kai-faulty"
FAULTS = Faults(latency=0.05, p_429=0.05, retry_after=1, p_503=0.05, p_lost=0.05, p_reset=0.3, p_truncate=0.3,
                cut_after=10, cut_seconds=2.0, max_in_a_row=2)


def _pods(c, ns):
    return c.get(f"/api/v1/namespaces/{ns}/pods")["items"]


def _cache_equals_fresh_list(c, ns, proc) -> bool:
    code, body = proc.get("/debug/state")
    if code != 200:
        return False
    cached = {k: v for k, v in json.loads(body)["pods"].items() if k.startswith(ns + "/")}
    fresh = {f"{ns}/{p['metadata']['name']}": p["spec"].get("nodeName", "") for p in _pods(c, ns)}
    return cached == fresh


def test_scheduling_through_a_faulty_api_server(control_plane, kai_client, kai_cluster, kube_namespace, tmp_path):
    c, ns = kai_client, kube_namespace
    token = json.loads(open(kai_cluster).read())["users"][0]["user"]["token"]
    proxy = FaultProxy(control_plane.server, control_plane.ca_file, FAULTS, seed=16).start()
    proc = SchedulerProcess(proxy.write_kubeconfig(tmp_path / "via-proxy", token), tmp_path / "faulty.log",
                            "--scheduler-name", NAME)
    try:
        proc.wait_ready(90)
        for g in range(3):
            ensure(c, f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups",
                   {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": f"g{g}"},
                    "spec": {"minMember": 4, "queue": "default-queue"}})
        for i in range(24):
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"p{i}", gpus=0, scheduler=NAME))
            if i % 8 == 7:
                g = i // 8
                for k in range(4):
                    c.post(f"/api/v1/namespaces/{ns}/pods",
                           pod_manifest(f"g{g}-{k}", gpus=0, scheduler=NAME, annotations={"pod-group-name": f"g{g}"}))
            if i % 4 == 3:                       # churn: some pods go away again
                c.delete(f"/api/v1/namespaces/{ns}/pods/p{i - 2}", {"gracePeriodSeconds": 0})
        wait_for(lambda: all(p["spec"].get("nodeName") for p in _pods(c, ns)), 120, 0.5, "every pod bound")
        assert proc.proc.poll() is None, proc.tail()
        faults = {r.fault for r in proxy.records}
        assert {"429", "503", "lost", "reset", "truncate"} <= faults, faults      # each fault really happened

        # after the faults stop: new pods still scheduled, the cache equals a fresh list
        proxy.set_faults(None)
        for i in range(2):
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"calm{i}", gpus=0, scheduler=NAME))
        wait_for(lambda: all(p["spec"].get("nodeName") for p in _pods(c, ns)), 60, what="pods after the faults")
        wait_for(lambda: _cache_equals_fresh_list(c, ns, proc), 60, what="cache == fresh list")

        binds = [r for r in proxy.select("POST", f"/namespaces/{ns}/pods/") if r.path.endswith("/binding")]
        ok: dict[str, int] = {}
        for r in binds:
            if r.status == 201:
                ok[r.path] = ok.get(r.path, 0) + 1
        assert ok and max(ok.values()) == 1                                   # none bound twice
        bound = {p["metadata"]["name"] for p in _pods(c, ns)}
        assert {p.split("/")[-2] for p in ok} >= bound
        for i, r in enumerate(binds):                                         # Retry-After honoured
            if r.fault == "429":
                nxt = next((x for x in binds[i + 1:] if x.path == r.path), None)
                if nxt is not None:
                    assert nxt.t - r.t >= 0.95, (r.path, nxt.t - r.t)
        failed = [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"] if e["reason"] == "FailedBinding"]
        assert not failed, [e["message"] for e in failed]
    finally:
        proc.stop()
        proxy.stop()
