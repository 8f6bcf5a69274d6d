"""KAI's scheduler flags end to end (issue 12 item 3), with ``kai scheduler`` against the real
API server: ``--restrict-node-scheduling`` places GPU and CPU pods on their worker nodes and
leaves a pod with no worker of its kind pending, ``--detailed-fit-errors`` puts every node's
reason in that pod's condition, ``--qps``/``--burst`` are accepted, and ``--enable-profiler``
serves a cProfile of live cycles."""
from __future__ import annotations

import urllib.request
import uuid

import pytest

from e2e_helpers import SchedulerProcess, free_port, wait_for
from kai.api import constants as C
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration


def _pod(name: str, scheduler: str, node_set: str, gpus: int = 0) -> dict:
    res = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    if gpus:
        res = {"requests": {**res["requests"], "nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"kai.scheduler/queue": "default-queue"}},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                     "nodeSelector": {"e2e-set": node_set},
                     "containers": [{"name": "main", "image": "busybox", "resources": res}]}}


def test_restrict_node_scheduling_detailed_fit_errors_and_profiler(kai_cluster, kai_client, control_plane,
                                                                   kube_namespace, tmp_path):
    c, ns = kai_client, kube_namespace
    tag = uuid.uuid4().hex[:6]
    name, ws, gpu_only = f"kai-flags-{tag}", f"workers-{tag}", f"gpuonly-{tag}"
    nodes = {f"gw-{tag}": ({C.GPU_WORKER_LABEL: "true", "e2e-set": ws}, 8),
             f"cw-{tag}": ({C.CPU_WORKER_LABEL: "true", "e2e-set": ws}, 8),
             f"go-{tag}": ({C.GPU_WORKER_LABEL: "true", "e2e-set": gpu_only}, 8)}
    for n, (labels, gpus) in nodes.items():
        control_plane.create_node(fake_node_manifest(n, gpus=gpus, cpu="16", memory="64Gi", labels=labels))
    control_plane.wait_nodes_ready(list(nodes))
    prof_port = free_port()
    proc = SchedulerProcess(kai_cluster, tmp_path / "scheduler.log", "--scheduler-name", name,
                            "--restrict-node-scheduling", "--detailed-fit-errors=true", "--qps", "20",
                            "--burst", "40", "--enable-profiler", "--profiler-port", str(prof_port))
    try:
        proc.wait_ready()
        base = f"/api/v1/namespaces/{ns}/pods"
        c.post(base, _pod("gpu", name, ws, gpus=1))
        c.post(base, _pod("cpu", name, ws))
        c.post(base, _pod("stuck", name, gpu_only))       # a CPU pod where only GPU workers are

        def node_of(pod: str) -> str:
            return c.get(f"{base}/{pod}")["spec"].get("nodeName", "")

        wait_for(lambda: node_of("gpu") and node_of("cpu"), 60, 0.3, "pods bound")
        assert node_of("gpu") == f"gw-{tag}" and node_of("cpu") == f"cw-{tag}"

        def stuck_message() -> str:
            conds = c.get(f"{base}/stuck").get("status", {}).get("conditions", [])
            return next((x.get("message", "") for x in conds if x["type"] == "PodScheduled"
                         and x.get("reason") == "Unschedulable"), "")

        msg = wait_for(stuck_message, 60, 0.3, "stuck pod's Unschedulable condition")
        assert "--restrict-node-scheduling" in msg and node_of("stuck") == ""
        assert f"go-{tag}: without the CPU worker label {C.CPU_WORKER_LABEL}" in msg     # per node

        with urllib.request.urlopen(f"http://127.0.0.1:{prof_port}/debug/pprof/profile?seconds=2",
                                    timeout=30) as r:
            text = r.read().decode()
        assert r.status == 200 and int(text.split()[1]) >= 1       # live cycles were profiled
        assert "run_cycle" in text
    finally:
        proc.stop()
        for n in nodes:
            control_plane.api_request("DELETE", f"/api/v1/nodes/{n}")
