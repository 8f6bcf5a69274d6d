"""Two ``kai scheduler`` replicas: only the Lease holder binds; the other takes over when it dies.

The replicas use their own scheduler name and Lease, so they never compete with the session's
scheduler for pods.
"""
from __future__ import annotations

import re
import signal
import time

import pytest

from e2e_helpers import SchedulerProcess, ensure, pod_manifest, wait_for

pytestmark = pytest.mark.integration

NAME = "kai-ha"
LEASE_NS = "kai-scheduler"   # the chart's namespace: its Role grants Leases only there
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{NAME}"


def _binds(proc: SchedulerProcess) -> float:
    code, body = proc.get("/metrics")
    if code != 200:
        return -1
    m = re.search(r"^kai_task_bind_latency_milliseconds_count ([0-9.e+]+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


def _leader(proc: SchedulerProcess) -> bool:
    return "kai_is_leader 1.0" in proc.get("/metrics")[1]


def _add_gang(c, ns: str, name: str, size: int) -> None:
    ensure(c, f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups",
           {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": name},
            "spec": {"minMember": size, "queue": "default-queue"}})
    for i in range(size):
        c.post(f"/api/v1/namespaces/{ns}/pods",
               pod_manifest(f"{name}-{i}", gpus=1, scheduler=NAME, annotations={"pod-group-name": name},
                            labels={"gang": name}))


def _bound(c, ns: str, name: str) -> bool:
    pods = c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"gang={name}"})["items"]
    return bool(pods) and all(p["spec"].get("nodeName") for p in pods)


def test_only_the_leader_binds_and_a_follower_takes_over(kai_client, kai_cluster, kube_namespace, tmp_path):
    c, ns = kai_client, kube_namespace
    args = ("--scheduler-name", NAME, "--leader-elect", "--namespace", LEASE_NS)
    a = SchedulerProcess(kai_cluster, tmp_path / "a.log", *args, "--identity", "replica-a")
    b = None
    try:
        a.wait_ready()
        wait_for(lambda: _leader(a), 30, what="replica a leading")
        b = SchedulerProcess(kai_cluster, tmp_path / "b.log", *args, "--identity", "replica-b")
        b.wait_ready()                                   # the follower's cache is synced too
        assert c.get(LEASE)["spec"]["holderIdentity"] == "replica-a"

        _add_gang(c, ns, "first", 2)
        wait_for(lambda: _bound(c, ns, "first"), 30, what="first gang bound")
        time.sleep(1.0)
        assert _binds(a) == 2 and _binds(b) == 0 and not _leader(b)

        # the leader dies without releasing the Lease: b takes over after the lease duration (15 s)
        killed_at = time.monotonic()
        a.stop(signal.SIGKILL)
        _add_gang(c, ns, "second", 2)
        wait_for(lambda: _bound(c, ns, "second"), 45, what="second gang bound by the new leader")
        took = time.monotonic() - killed_at
        assert took < 15 + 2 * 2 + 5, f"takeover took {took:.1f}s"
        assert c.get(LEASE)["spec"]["holderIdentity"] == "replica-b"
        assert _binds(b) == 2 and _leader(b)
        lease = c.get(LEASE)["spec"]
        assert lease["leaseDurationSeconds"] == 15 and lease["leaseTransitions"] >= 1
    finally:
        a.stop()
        if b is not None:
            # a clean stop releases the Lease
            assert b.stop() == 0, b.tail()
    assert not c.get(LEASE)["spec"].get("holderIdentity")
