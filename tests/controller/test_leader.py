"""Lease leader election against a real kube-apiserver (short durations to keep it quick)."""
from __future__ import annotations

import time
import uuid

import pytest

from kai.cache.kubeclient import KubeClient, load_kubeconfig
from kai.controller.leader import LeaderElector

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(control_plane) -> KubeClient:
    return KubeClient(load_kubeconfig(control_plane.kubeconfig))


def _elector(client, ns, name, ident, **kw):
    return LeaderElector(client, ns, name, ident, lease_duration=3, renew_deadline=2, retry_period=0.3, **kw)


def test_one_leader_takeover_after_expiry_and_release(client, kube_namespace):
    ns, name = kube_namespace, f"lease-{uuid.uuid4().hex[:6]}"
    a = _elector(client, ns, name, "a").start()
    assert a.is_leader.wait(10)
    b = _elector(client, ns, name, "b").start()
    time.sleep(1.5)
    assert not b.is_leader.is_set()                          # a keeps renewing
    lease = client.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")["spec"]
    assert lease["holderIdentity"] == "a" and lease["leaseDurationSeconds"] == 3
    # a "crashes": stops renewing without releasing; b waits a full lease duration
    t0 = time.monotonic()
    a.stop(release=False)
    assert b.is_leader.wait(10)
    assert time.monotonic() - t0 >= 2.5
    lease = client.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")["spec"]
    assert lease["holderIdentity"] == "b" and lease["leaseTransitions"] == 1
    # a clean stop releases: the next candidate gets it at once
    b.stop(release=True)
    c = _elector(client, ns, name, "c").start()
    t1 = time.monotonic()
    try:
        assert c.is_leader.wait(5)
        assert time.monotonic() - t1 < 2.0
    finally:
        c.stop()


def test_leader_that_cannot_renew_steps_down(client, kube_namespace):
    ns, name = kube_namespace, f"lease-{uuid.uuid4().hex[:6]}"
    lost = []
    a = _elector(client, ns, name, "a", on_stopped=lambda: lost.append(time.monotonic())).start()
    try:
        assert a.is_leader.wait(10)
        # someone else takes the Lease over behind a's back (as after a long pause of a)
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"
        lease = client.get(path)
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["renewTime"] = lease["spec"]["renewTime"]
        client.put(path, lease)
        deadline = time.monotonic() + 10
        while not lost and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lost and not a.is_leader.is_set()
    finally:
        a.stop(release=False)


def test_fence_closes_on_the_monotonic_clock_before_anyone_can_take_over(client, kube_namespace):
    ns, name = kube_namespace, f"lease-{uuid.uuid4().hex[:6]}"
    a = _elector(client, ns, name, "a").start()
    try:
        assert a.is_leader.wait(10) and a.holds()
        assert 0 < a.valid_for() <= 3 - (3 - 2)              # lease duration - margin (lease - renew deadline)
        # a "pauses": its renew thread stops, yet nothing has told it it lost the lease
        a._stop.set()
        a._thread.join(5)
        deadline = a.renewed_at + 2.0                       # last renewal sent + lease - margin
        while True:
            t = time.monotonic()                            # holds() is evaluated at t or later
            if not a.holds():
                break
            assert t <= deadline, "a paused leader still held the fence past lease - margin"
            time.sleep(0.02)
        assert a.is_leader.is_set()                         # still believes it leads ...
        assert time.monotonic() - deadline < 1.0            # ... but is fenced, about at lease - margin
        # and a follower could only take over after the full lease duration from the last renewal
        assert a.renewed_at + 3 > time.monotonic() - 0.1
    finally:
        a.stop(release=False)


def test_released_lease_taken_over_within_a_second(client, kube_namespace):
    """Followers watch the Lease: a release is seen at once, not after a retry period."""
    ns, name = kube_namespace, f"lease-{uuid.uuid4().hex[:6]}"
    slow = dict(lease_duration=15, renew_deadline=10, retry_period=2)
    a = LeaderElector(client, ns, name, "a", **slow).start()
    b = LeaderElector(client, ns, name, "b", **slow)
    try:
        assert a.is_leader.wait(10)
        b.start()
        time.sleep(2.5)                                     # b is watching the Lease by now
        assert not b.is_leader.is_set()
        t0 = time.monotonic()
        a.stop(release=True)
        assert b.is_leader.wait(5)
        assert time.monotonic() - t0 < 1.0
        assert b.holds()
    finally:
        a.stop(release=False)
        b.stop()
