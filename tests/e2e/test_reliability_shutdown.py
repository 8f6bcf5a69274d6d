"""Graceful shutdown (issue 16): SIGTERM the leader while it is binding.

The leader talks through the fault proxy with 0.3 s of latency, so bindings are in flight
when SIGTERM arrives. It finishes them, releases the Lease, and exits 0; the follower (the
default 15 s Lease, so a takeover by expiry would be far slower) takes over within a
second of the release and binds the rest. Every pod ends bound exactly once.
"""
from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from e2e_helpers import SchedulerProcess, pod_manifest, wait_for
from kai.testing.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.integration

NAME = "kai-term"
LEASE_NS = "kai-scheduler"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{NAME}"
N = 40


def _pods(c, ns):
    return c.get(f"/api/v1/namespaces/{ns}/pods")["items"]


def test_sigterm_finishes_binds_releases_the_lease_and_exits_0(control_plane, kai_client, kai_cluster,
                                                               kube_namespace, tmp_path):
    c, ns = kai_client, kube_namespace
    token = json.loads(open(kai_cluster).read())["users"][0]["user"]["token"]
    proxy = FaultProxy(control_plane.server, control_plane.ca_file).start()
    args = ("--scheduler-name", NAME, "--leader-elect", "--namespace", LEASE_NS, "--bind-workers", "4")
    a = SchedulerProcess(proxy.write_kubeconfig(tmp_path / "via-proxy", token), tmp_path / "a.log", *args,
                         "--identity", "term-a")
    b = None
    holders: list[tuple[float, str]] = []
    watching = threading.Event()
    try:
        a.wait_ready(90)
        wait_for(lambda: c.get(LEASE)["spec"].get("holderIdentity") == "term-a", 30, what="a leading")
        b = SchedulerProcess(kai_cluster, tmp_path / "b.log", *args, "--identity", "term-b")
        b.wait_ready()
        time.sleep(2.5)                                     # b is watching the Lease
        proxy.set_faults(Faults(latency=0.3))               # a's bindings take a while from now on
        for i in range(N):
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"p{i}", gpus=0, scheduler=NAME))
        wait_for(lambda: proxy.select("POST", "/binding"), 30, 0.05, "a binding")

        def watch_lease() -> None:
            while not watching.is_set():
                holders.append((time.monotonic(), c.get(LEASE)["spec"].get("holderIdentity") or ""))
                time.sleep(0.02)
        poller = threading.Thread(target=watch_lease, daemon=True)
        poller.start()
        sent = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(25) == 0, a.tail()
        exited = time.monotonic()
        wait_for(lambda: all(p["spec"].get("nodeName") for p in _pods(c, ns)), 60, what="all pods bound")
        watching.set()
        poller.join(5)

        released = next(t for t, h in holders if h != "term-a")
        taken = next(t for t, h in holders if h == "term-b")
        assert taken - released < 1.0, (released - sent, taken - released)
        assert released <= exited + 0.1                     # released before the process was gone
        log = a.log_path.read_text()
        assert "released lease" in log and "bindings_finished" in log
        binds: dict[str, int] = {}
        for e in control_plane.audit_events():
            ref = e.get("objectRef") or {}
            if ref.get("subresource") == "binding" and ref.get("namespace") == ns and e["verb"] == "create" \
                    and (e.get("responseStatus") or {}).get("code") == 201:
                binds[ref["name"]] = binds.get(ref["name"], 0) + 1
        assert binds == {f"p{i}": 1 for i in range(N)}
        by_a = {r.path.split("/")[-2] for r in proxy.select("POST", "/binding") if r.status == 201}
        assert by_a and len(by_a) < N                       # a bound some, b the rest
        failed = [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"] if e["reason"] == "FailedBinding"]
        assert not failed, [e["message"] for e in failed]
    finally:
        watching.set()
        a.stop()
        if b is not None:
            assert b.stop() == 0, b.tail()
        proxy.stop()
