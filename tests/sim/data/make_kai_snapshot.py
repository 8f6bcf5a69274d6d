"""Maintenance tool (not a test): how ``kai-snapshot-72de64f.zip`` was made.

Runs KAI-Scheduler's own scheduler binary on kai's local control plane (kwok nodes), lets it
decide on a small cluster, and saves what its snapshot plugin serves at ``/get-snapshot``.
KAI's BindRequests stay pending (no KAI binder runs), so the snapshot holds KAI's decisions.

    go build -o kai-scheduler ./cmd/scheduler           # in a KAI-Scheduler checkout
    python tests/sim/data/make_kai_snapshot.py OUT.zip --kai-scheduler ./kai-scheduler \
        --kai-crds <checkout>/deployments/kai-scheduler/crds

Prints KAI's (pod, node) decisions.
"""
import argparse
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from kai.testing.controlplane import ControlPlane, fake_node_manifest

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--kai-scheduler", required=True, help="KAI's scheduler binary")
ap.add_argument("--kai-crds", required=True, help="KAI's CRD directory (BindRequest included)")
args = ap.parse_args()
CRDS = Path(args.kai_crds)
RES = {"quota": -1, "limit": -1, "overQuotaWeight": 1}

def ok(r, what):
    s, b = r
    assert s in (200, 201, 409), (what, s, b)
    return b

cp = ControlPlane(with_controller_manager=True, with_kwok=True)
cp.start()
try:
    for f in sorted(CRDS.glob("*.yaml")):
        ok(cp.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(f.read_text())), f.name)
    time.sleep(3)
    for pc, v in (("train", 50), ("build-preemptible", 75), ("build", 100), ("inference", 125)):
        ok(cp.api_request("POST", "/apis/scheduling.k8s.io/v1/priorityclasses",
                          {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": pc}, "value": v}), pc)
    for i in range(3):
        n = f"gpu-node-{i}"
        cp.create_node(fake_node_manifest(n, gpus=4, cpu="32", memory="128Gi", labels={"nvidia.com/gpu.memory": "40960"}))
    cp.wait_nodes_ready([f"gpu-node-{i}" for i in range(3)])
    for i in range(3):   # lift the admission not-ready taint (no node lifecycle controller here)
        s, node = cp.api_request("GET", f"/api/v1/nodes/gpu-node-{i}")
        node["spec"]["taints"] = [t for t in node["spec"].get("taints", []) if t["key"] != "node.kubernetes.io/not-ready"]
        ok(cp.api_request("PUT", f"/api/v1/nodes/gpu-node-{i}", node), "taint")
    def q(name, parent="", gpu=None):
        spec = {"resources": {"gpu": gpu or RES, "cpu": RES, "memory": RES}}
        if parent: spec["parentQueue"] = parent
        return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2/queues", q("research")), "q")
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2/queues", q("team-a", "research", {"quota": 6, "limit": -1, "overQuotaWeight": 1})), "q")
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2/queues", q("team-b", "research", {"quota": 6, "limit": -1, "overQuotaWeight": 1})), "q")
    ok(cp.api_request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}}), "ns")
    cp.wait_default_service_account("ml")
    def pg(name, queue, minm, prio="train"):
        return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": name},
                "spec": {"minMember": minm, "queue": queue, "priorityClassName": prio}}
    def pod(name, group, gpus, ann=None):
        res = {"cpu": "1", "memory": "1Gi"}
        lim = {}
        if gpus:
            res["nvidia.com/gpu"] = lim["nvidia.com/gpu"] = str(gpus)
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "annotations": {"pod-group-name": group, **(ann or {})}},
                "spec": {"schedulerName": "kai-scheduler", "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": "busybox", "resources": {"requests": res, "limits": lim}}]}}
    # running already (bound by hand), as if scheduled earlier
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2alpha2/namespaces/ml/podgroups", pg("a-run", "team-a", 2)), "pg")
    for i in range(2):
        ok(cp.api_request("POST", "/api/v1/namespaces/ml/pods", pod(f"a-run-{i}", "a-run", 2)), "pod")
        ok(cp.api_request("POST", f"/api/v1/namespaces/ml/pods/a-run-{i}/binding",
                          {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"a-run-{i}"},
                           "target": {"apiVersion": "v1", "kind": "Node", "name": f"gpu-node-{i}"}}), "bind")
    # pending work KAI will decide on
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2alpha2/namespaces/ml/podgroups", pg("a-gang", "team-a", 3)), "pg")
    for i in range(3):
        ok(cp.api_request("POST", "/api/v1/namespaces/ml/pods", pod(f"a-gang-{i}", "a-gang", 1)), "pod")
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2alpha2/namespaces/ml/podgroups", pg("b-big", "team-b", 1, "build")), "pg")
    ok(cp.api_request("POST", "/api/v1/namespaces/ml/pods", pod("b-big-0", "b-big", 4)), "pod")
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2alpha2/namespaces/ml/podgroups", pg("b-cpu", "team-b", 1)), "pg")
    ok(cp.api_request("POST", "/api/v1/namespaces/ml/pods", pod("b-cpu-0", "b-cpu", 0)), "pod")
    ok(cp.api_request("POST", "/apis/scheduling.run.ai/v2alpha2/namespaces/ml/podgroups", pg("b-huge", "team-b", 1)), "pg")
    ok(cp.api_request("POST", "/api/v1/namespaces/ml/pods", pod("b-huge-0", "b-huge", 8)), "pod")
    time.sleep(2)
    env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
    log = open(args.out + ".log", "wb")
    proc = subprocess.Popen([args.kai_scheduler, "--listen-address", "127.0.0.1:18080",
                             "--plugin-server-port", "18081", "--profiler-port", "18182", "--v", "4"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        data = None
        for _ in range(120):
            time.sleep(1)
            if proc.poll() is not None:
                raise SystemExit(f"KAI scheduler exited {proc.returncode}")
            s, brs = cp.api_request("GET", "/apis/scheduling.run.ai/v1alpha2/bindrequests")
            if s == 200 and len(brs.get("items", [])) >= 4:
                break
        time.sleep(3)
        with urllib.request.urlopen("http://127.0.0.1:18081/get-snapshot", timeout=30) as r:
            data = r.read()
        Path(args.out).write_bytes(data)
        s, brs = cp.api_request("GET", "/apis/scheduling.run.ai/v1alpha2/bindrequests")
        print(json.dumps(sorted((b["spec"]["podName"], b["spec"]["selectedNode"]) for b in brs["items"])))
    finally:
        proc.terminate(); proc.wait(10)
finally:
    cp.stop()
