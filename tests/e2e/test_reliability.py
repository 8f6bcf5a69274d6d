"""Reliability: the scheduler killed mid-bind and restarted, and kube-apiserver restarted.

Afterwards every pod is bound exactly once (no FailedBinding), and the scheduler's cache
(``/debug/state``) equals a fresh list. Uses its own scheduler name so the session's
scheduler does not take these pods.
"""
from __future__ import annotations

import json
import signal

import pytest

from e2e_helpers import SchedulerProcess, pod_manifest, wait_for

pytestmark = pytest.mark.integration

NAME = "kai-rel"


def _pods(c, ns):
    return c.get(f"/api/v1/namespaces/{ns}/pods")["items"]


def _cache_equals_fresh_list(c, ns, proc) -> bool:
    code, body = proc.get("/debug/state")
    if code != 200:
        return False
    cached = {k: v for k, v in json.loads(body)["pods"].items() if k.startswith(ns + "/")}
    fresh = {f"{ns}/{p['metadata']['name']}": p["spec"].get("nodeName", "") for p in _pods(c, ns)}
    return cached == fresh


def test_killed_mid_bind_then_apiserver_restart(control_plane, kai_client, kai_cluster, kube_namespace, tmp_path):
    c, ns = kai_client, kube_namespace
    first = SchedulerProcess(kai_cluster, tmp_path / "first.log", "--scheduler-name", NAME)
    second = None
    try:
        first.wait_ready()
        for i in range(30):
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"p{i}", gpus=0, scheduler=NAME))
        # kill it as soon as binding has started
        wait_for(lambda: any(p["spec"].get("nodeName") for p in _pods(c, ns)), 30, 0.05, "a first binding")
        first.stop(signal.SIGKILL)
        partially = sum(1 for p in _pods(c, ns) if p["spec"].get("nodeName"))
        second = SchedulerProcess(kai_cluster, tmp_path / "second.log", "--scheduler-name", NAME)
        second.wait_ready()
        wait_for(lambda: all(p["spec"].get("nodeName") for p in _pods(c, ns)), 60, what="all 30 pods bound")
        failed = [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"] if e["reason"] == "FailedBinding"]
        assert not failed, [e["message"] for e in failed]
        assert partially >= 1

        # kube-apiserver goes away and comes back: watches reconnect, the cache converges
        control_plane.restart_apiserver(downtime=1.0)
        for i in range(3):
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"after{i}", gpus=0, scheduler=NAME))
        wait_for(lambda: all(p["spec"].get("nodeName") for p in _pods(c, ns)), 60,
                 what="pods created after the restart bound")
        wait_for(lambda: _cache_equals_fresh_list(c, ns, second), 30, what="cache == fresh list")
        assert second.proc.poll() is None, second.tail()
    finally:
        first.stop()
        if second is not None:
            second.stop()
