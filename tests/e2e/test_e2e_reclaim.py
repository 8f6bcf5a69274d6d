"""Reclaim between queues on a live cluster: evictions go through DisruptionTarget + DELETE.

Queue rc-a borrows the whole 8-GPU pool; rc-b then asks for its 4-GPU quota, and the
scheduler reclaims from rc-a. Its own scheduler name and dedicated nodes (nodeSelector) keep
it apart from the other tests.
"""
from __future__ import annotations

import pytest

from e2e_helpers import SchedulerProcess, ensure, pod_manifest, queue_manifest, wait_for
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

NAME = "kai-rc"
POOL = {"kai-e2e/pool": "reclaim"}


def _pod(name: str, queue: str) -> dict:
    p = pod_manifest(name, gpus=1, scheduler=NAME, labels={"kai.scheduler/queue": queue, "q": queue})
    p["spec"]["nodeSelector"] = dict(POOL)
    return p


def _pods(c, ns, queue):
    return c.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"q={queue}"})["items"]


def test_reclaim_between_queues(control_plane, kai_client, kai_cluster, kube_namespace, tmp_path):
    c, ns = kai_client, kube_namespace
    nodes = ["rc-node-0", "rc-node-1"]
    for n in nodes:
        try:
            control_plane.create_node(fake_node_manifest(n, gpus=4, labels=POOL))
        except Exception as exc:   # noqa: BLE001 - rerun in the same session
            if "409" not in str(exc) and "AlreadyExists" not in str(exc):
                raise
    control_plane.wait_nodes_ready(nodes)
    ensure(c, "/apis/scheduling.run.ai/v2/queues", queue_manifest("rc-root"))
    ensure(c, "/apis/scheduling.run.ai/v2/queues", queue_manifest("rc-a", "rc-root", 4))
    ensure(c, "/apis/scheduling.run.ai/v2/queues", queue_manifest("rc-b", "rc-root", 4))
    sched = SchedulerProcess(kai_cluster, tmp_path / "rc.log", "--scheduler-name", NAME)
    try:
        sched.wait_ready()
        for i in range(8):
            c.post(f"/api/v1/namespaces/{ns}/pods", _pod(f"a{i}", "rc-a"))
        wait_for(lambda: len([p for p in _pods(c, ns, "rc-a") if p["spec"].get("nodeName")]) == 8, 60,
                 what="rc-a borrowing all 8 GPUs")
        for i in range(4):
            c.post(f"/api/v1/namespaces/{ns}/pods", _pod(f"b{i}", "rc-b"))
        wait_for(lambda: len([p for p in _pods(c, ns, "rc-b") if p["spec"].get("nodeName")]) == 4, 90,
                 what="rc-b getting its quota back by reclaim")
        a_left = [p for p in _pods(c, ns, "rc-a") if not p["metadata"].get("deletionTimestamp")]
        assert len(a_left) == 4 and all(p["spec"].get("nodeName") for p in a_left)
        def evict_events():
            return [e for e in c.get(f"/api/v1/namespaces/{ns}/events")["items"] if e["reason"] == "Evict"]
        # (each Evict Event is posted after its DELETE, through the status writer's queue)
        wait_for(lambda: len({e["involvedObject"]["name"] for e in evict_events()}) >= 4, 15,
                 what="an Evict Event for each reclaimed pod")
        evicts = evict_events()
        assert len({e["involvedObject"]["name"] for e in evicts}) == 4
        assert all("reclaim" in e["message"] for e in evicts)
    finally:
        sched.stop()
