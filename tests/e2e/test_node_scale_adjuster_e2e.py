"""End to end: ``kai node-scale-adjuster`` with a test cluster autoscaler, on the local control plane.

Two pods asking for half a GPU each (``gpu-fraction: "0.5"``) select a node group that has no
node yet (``nodeSelector``). kai cannot place them and marks them Unschedulable. The adjuster
then creates one scaling pod (1 GPU covers both halves) in ``kai-scale-adjust``. It carries the
pods' node selector, has no ``schedulerName``, and is marked Unschedulable at once. A small
autoscaler loop in the test does a cluster autoscaler's job: it sees the pending scaling pod
and adds a kwok node with one GPU, built from the scaling pod's node selector. kai then places
both fraction pods on that node, sharing its GPU, and the adjuster deletes the scaling pod.
On kwok nothing reads a GPU through NVML, so the test writes the reservation pod's GPU
annotation (as in test_status_e2e.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from e2e_helpers import REPO, chart_rbac_kubeconfig, play_gpu_device, pod_manifest, wait_for
from kai.cache.kubeclient import ApiError
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

NS = "kai-scale-adjust"
SCALING = f"/api/v1/namespaces/{NS}/pods"
RES_PODS = "/api/v1/namespaces/kai-resource-reservation/pods"


@pytest.fixture
def adjuster(control_plane, kai_client, tmp_path):
    """``kai node-scale-adjuster`` with the chart's ServiceAccount and RBAC (the chart also
    creates the scaling namespace and the scaling pods' ServiceAccount)."""
    kubeconfig = chart_rbac_kubeconfig(control_plane, ["global.clusterAutoscaling=true"],
                                       "kai-scheduler-node-scale-adjuster")
    log = open(tmp_path / "nsa.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "kai", "-v", "node-scale-adjuster", "--kubeconfig",
                             kubeconfig, "--cool-down-seconds", "2", "--period", "0.5"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            assert proc.wait(15) == 0, (tmp_path / "nsa.log").read_text()
        finally:
            log.close()


def test_scaling_pod_brings_a_node_for_fraction_pods(kai_client, kai_scheduler, adjuster, kube_namespace,
                                                     control_plane):
    c, ns = kai_client, kube_namespace
    group = f"nsa-{uuid.uuid4().hex[:6]}"             # the node group: no node has this label yet
    added: list[str] = []
    stop = threading.Event()
    seen_scaling: dict[str, dict] = {}

    def autoscaler() -> None:
        """A cluster autoscaler's scale-up: a pending, unschedulable pod asking for GPUs whose
        node selector names our node group gets a node of that group."""
        while not stop.is_set():
            try:
                pods = c.get(SCALING)["items"]
            except ApiError:
                pods = []
            for p in pods:
                sel = p["spec"].get("nodeSelector") or {}
                conds = (p.get("status") or {}).get("conditions") or []
                if sel.get("nsa-group") != group:
                    continue
                if p["spec"].get("nodeName"):
                    # a default scheduler in this control plane (the differential tests start
                    # kube-scheduler) placed it on the new node: its container (/bin/true) exits
                    # at once on a real node and frees the GPU; kwok never ends a pod, so the test does
                    if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                        try:
                            c.patch(f"{SCALING}/{p['metadata']['name']}/status", {"status": {"phase": "Succeeded"}})
                        except ApiError:
                            pass
                    continue
                seen_scaling.setdefault(p["metadata"]["name"], p)
                if not added and any(x["type"] == "PodScheduled" and x["status"] == "False"
                                     and x.get("reason") == "Unschedulable" for x in conds):
                    name = f"{group}-node-0"
                    control_plane.create_node(fake_node_manifest(name, gpus=1, cpu="8", memory="32Gi",
                                                                 labels=dict(sel)))
                    added.append(name)
            time.sleep(0.2)

    threads = [threading.Thread(target=autoscaler, daemon=True)]
    threads[0].start()
    threads.append(play_gpu_device(c, "GPU-0d5e1b7a-1111-4222-8333-444455556666", lambda n: n in added, stop))
    try:
        for i in range(2):
            m = pod_manifest(f"half-{i}", gpus=0, annotations={"gpu-fraction": "0.5"})
            m["spec"]["nodeSelector"] = {"nsa-group": group}
            c.post(f"/api/v1/namespaces/{ns}/pods", m)

        def placed():
            pods = [c.get(f"/api/v1/namespaces/{ns}/pods/half-{i}") for i in range(2)]
            return [p["spec"].get("nodeName") for p in pods] if all(p["spec"].get("nodeName") for p in pods) \
                else None
        nodes = wait_for(placed, 90, 0.5, "both fraction pods placed on the new node")
        assert added and nodes == [added[0], added[0]], (nodes, added)

        # exactly one scaling pod was made (1 GPU covers two halves), shaped as KAI's
        assert len(seen_scaling) == 1, sorted(seen_scaling)
        sp = next(iter(seen_scaling.values()))
        assert sp["metadata"]["name"] in (f"{ns}-half-0", f"{ns}-half-1")
        assert sp["metadata"]["labels"]["app"] == "scaling-pod"
        assert sp["metadata"]["labels"]["shared-gpu-pod-namespace"] == ns
        assert sp["spec"]["schedulerName"] == "default-scheduler"      # the autoscaler's scheduler
        res = sp["spec"]["containers"][0]["resources"]
        assert res["requests"]["nvidia.com/gpu"] == "1" and res["limits"]["nvidia.com/gpu"] == "1"
        assert res["requests"]["cpu"] == "100m" and sp["spec"]["nodeSelector"] == {"nsa-group": group}

        # the fraction pods are placed: the scaling pod goes away
        wait_for(lambda: not [p for p in c.get(SCALING)["items"]
                              if (p["spec"].get("nodeSelector") or {}).get("nsa-group") == group],
                 30, 0.5, "the scaling pod deleted")
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for n in added:
            control_plane.api_request("DELETE", f"/api/v1/nodes/{n}")
