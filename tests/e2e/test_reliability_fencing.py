"""A paused leader is fenced (issue 16): SIGSTOP the leader longer than its Lease, let the
follower take over and schedule, SIGCONT the old leader. The API server's audit log shows
zero writes from the old leader after the takeover, and every pod was bound exactly once.

Short Lease timings (4 s lease, 3 s renew deadline, 0.5 s retry: writes fenced 1 s before
the Lease could expire) keep it quick; the replicas run with the chart's ServiceAccount, whose
writes the session's control plane audits (``ControlPlane.audit_events``).
"""
from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest

from e2e_helpers import SchedulerProcess, pod_manifest, wait_for

pytestmark = pytest.mark.integration

NAME = "kai-fence"
LEASE_NS = "kai-scheduler"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{NAME}"
TIMINGS = ("--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
           "--leader-elect-retry-period", "0.5s")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _log_ts(line: str) -> float | None:
    """The time of a scheduler log line (local time, to the second), None for other lines."""
    try:
        return datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").timestamp()
    except ValueError:
        return None


def _pods(c, ns):
    return c.get(f"/api/v1/namespaces/{ns}/pods")["items"]


def _all_bound(c, ns, n):
    pods = _pods(c, ns)
    return len(pods) == n and all(p["spec"].get("nodeName") for p in pods)


def _replica(cluster, tmp_path, ident):
    return SchedulerProcess(cluster, tmp_path / f"{ident}.log", "--scheduler-name", NAME, "--leader-elect",
                            "--namespace", LEASE_NS, "--identity", ident, *TIMINGS)


def test_paused_leader_makes_no_write_after_takeover(control_plane, kai_client, kai_cluster, kube_namespace,
                                                     tmp_path):
    c, ns = kai_client, kube_namespace
    a = _replica(kai_cluster, tmp_path, "fence-a")
    b = None
    stopped = False
    try:
        a.wait_ready()
        wait_for(lambda: c.get(LEASE)["spec"].get("holderIdentity") == "fence-a", 30, what="a leading")
        b = _replica(kai_cluster, tmp_path, "fence-b")
        b.wait_ready()
        for i in range(4):
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"before-{i}", gpus=0, scheduler=NAME))
        wait_for(lambda: _all_bound(c, ns, 4), 30, what="pods bound by a")

        # a pauses (a long GC, a starved node ...): its Lease runs out while b watches it
        a.proc.send_signal(signal.SIGSTOP)
        stopped = True
        paused_at = time.time()
        # work a will find in its (stale) cache when it wakes up: created while it sleeps
        for i in range(6):
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"during-{i}", gpus=0, scheduler=NAME))
        wait_for(lambda: c.get(LEASE)["spec"].get("holderIdentity") == "fence-b", 30, what="b takes over")
        lease = c.get(LEASE)["spec"]
        takeover = _ts(lease["acquireTime"])
        assert takeover - paused_at >= 3.0                      # not before a's Lease ran out
        wait_for(lambda: _all_bound(c, ns, 10), 30, what="b schedules the new pods")

        # a wakes up: it still believes it leads until its elector looks, but it is fenced
        a.proc.send_signal(signal.SIGCONT)
        stopped = False
        a.proc.wait(30)
        assert a.proc.returncode == 1, a.tail()                 # lost the Lease: exits, like KAI
        log = a.log_path.read_text()
        assert "lost leadership" in log
        for i in range(2):                                      # b keeps scheduling
            c.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest(f"after-{i}", gpus=0, scheduler=NAME))
        wait_for(lambda: _all_bound(c, ns, 12), 30, what="b schedules after a is gone")

        events = control_plane.audit_events()
        late = [e for e in events if "(fence-a)" in e.get("userAgent", "") and e["verb"] in WRITES
                and _ts(e["requestReceivedTimestamp"]) >= takeover]
        assert late == [], [(e["verb"], e["objectRef"], e["requestReceivedTimestamp"]) for e in late]
        assert any("(fence-a)" in e.get("userAgent", "") for e in events)      # a's writes are audited at all
        binds: dict[str, int] = {}
        for e in events:
            ref = e.get("objectRef") or {}
            if ref.get("subresource") == "binding" and ref.get("namespace") == ns and e["verb"] == "create" \
                    and (e.get("responseStatus") or {}).get("code") == 201:
                binds[ref["name"]] = binds.get(ref["name"], 0) + 1
        assert binds == {p["metadata"]["name"]: 1 for p in _pods(c, ns)}          # each pod bound exactly once
        # the wake-up was fenced rather than lucky: a found the new pods pending and sent
        # nothing. Or a's elector saw the Lease gone before a's loop ran a cycle (both wake at
        # once): then no cycle is logged after the pause, and a exits without one
        fenced = "cycle abandoned" in log or "bind not sent" in log
        woke = [ln for ln in log.splitlines() if (t := _log_ts(ln)) is not None and t >= paused_at + 2]
        assert fenced or (woke and not any("] cycle " in ln for ln in woke)), log[-3000:]
    finally:
        if stopped:
            a.proc.send_signal(signal.SIGCONT)
        a.stop()
        if b is not None:
            b.stop()
