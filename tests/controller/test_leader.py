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
