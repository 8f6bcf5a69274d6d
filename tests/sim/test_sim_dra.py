"""DRA in ``kai simulate`` (kai.sim.dra, kai.sim.simulator): the worked example of docs/dra.md
runs as documented, JSON bindings carry the claims, the table shows the devices, and the
binder's / controller-manager's effects are applied between cycles."""
from __future__ import annotations

import json
import os

import msgspec

from kai.api.k8s import Pod
from kai.cache.dra_store import DraStore
from kai.cli import main
from kai.sim.dra import claims_bound, claims_released
from kai.testing import dra as B

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "examples", "dra.yaml")


def _run(capsys, *args) -> str:
    assert main(["simulate", EXAMPLE, *args]) == 0
    return capsys.readouterr().out


def test_worked_example_json(capsys):
    rep = json.loads(_run(capsys, "--output", "json"))
    cyc = rep["cycles"][0]
    bound = {b["pod"]: b for b in cyc["bindings"]}
    assert sorted(bound) == ["team-a/notebook-0", "team-a/notebook-1", "team-a/train-0", "team-a/train-1",
                             "team-b/serve"]
    # the gang: two H100s each, on one NUMA node each, all four on node-1
    t0, t1 = bound["team-a/train-0"], bound["team-a/train-1"]
    assert t0["node"] == t1["node"] == "node-1"
    assert t0["claims"] == [{"claim": "team-a/train-0-gpus", "results": [
        {"request": "gpu", "driver": "gpu.example.com", "pool": "node-1", "device": "gpu-0"},
        {"request": "gpu", "driver": "gpu.example.com", "pool": "node-1", "device": "gpu-1"}]}]
    assert [r["device"] for r in t1["claims"][0]["results"]] == ["gpu-2", "gpu-3"]
    # the shared claim: allocated once, both notebooks where it is
    n0, n1 = bound["team-a/notebook-0"], bound["team-a/notebook-1"]
    assert n0["claims"] == n1["claims"] and n0["claims"][0]["claim"] == "team-a/shared-gpu"
    assert n0["node"] == n1["node"] == n0["claims"][0]["results"][0]["pool"] == "node-2"
    assert bound["team-b/serve"]["claims"][0]["results"][0]["pool"] == "node-2"
    devices = [(r["pool"], r["device"]) for b in bound.values() for c in b["claims"] for r in c["results"]
               if c["claim"] != "team-a/shared-gpu"] + [("node-2", n0["claims"][0]["results"][0]["device"])]
    assert len(devices) == len(set(devices)) == 6
    reasons = {u["podGroup"]: " ".join(u["reasons"]) for u in cyc["unschedulable"]}
    assert "OverLimit: queue 'team-a' would use 8 gpu, above its limit 6" in \
        reasons["team-a/pg-finetune-uid-pod-team-a-finetune"]
    assert "resource claim team-b/eval-gpu, request gpu: no device of class gpu.example.com matches" in \
        reasons["team-b/pg-eval-uid-pod-team-b-eval"]
    queues = {q["name"]: q for q in rep["queues"]}
    assert queues["team-a"]["allocated"]["gpu"] == 6 and queues["team-b"]["allocated"]["gpu"] == 1
    assert queues["research"]["fairShare"]["gpu"] == 8          # the 8 DRA GPUs are the capacity


def test_worked_example_table_shows_devices(capsys):
    out = _run(capsys)
    assert "claim   team-a/train-0-gpus" in out
    assert "gpu=gpu.example.com/node-1/gpu-0, gpu=gpu.example.com/node-1/gpu-1" in out
    assert "request gpu: no device of class gpu.example.com matches" in out


def test_cycles_write_claims_back(capsys):
    """The second cycle sees the first one's claims written (allocation, reservedFor, the pod's
    resourceClaimStatuses): nothing is placed twice, the shared claim keeps its device."""
    rep = json.loads(_run(capsys, "--output", "json", "--cycles", "2"))
    assert rep["cycles"][1]["bindings"] == []
    assert {u["podGroup"] for u in rep["cycles"][1]["unschedulable"]} == {
        "team-a/pg-finetune-uid-pod-team-a-finetune", "team-b/pg-eval-uid-pod-team-b-eval"}


def test_claims_bound_and_released_model_the_binder_and_controller():
    s = DraStore()
    s.load({"ResourceSlice": [B.gpu_slice("n0", 2)], "DeviceClass": [B.device_class("gpu")],
            "ResourceClaimTemplate": [B.template("t", B.request("g", "gpu", 1), namespace="ns")],
            "ResourceClaim": [B.claim("shared", B.request("g", "gpu", 1), namespace="ns")]})
    s.generate = True
    pod = B.pod_with_claims("p", "ns", claims={"s": "shared"}, templates={"g": "t"})
    al = s.allocator(["n0"])
    got = al.allocate(al.prepare(s.pod_claims(pod, generate=True), pod_uid="uid-p"), 0, pod_uid="uid-p")
    pod2 = claims_bound(s, pod, got)
    assert [(st.name, st.resource_claim_name) for st in pod2.status.resource_claim_statuses] == [("g", "p-g")]
    for key in ("ns/shared", "ns/p-g"):
        c = s.claims[key]
        assert c.status.allocation is not None and [r.uid for r in c.status.reserved_for] == ["uid-p"]
    other = msgspec.convert({"metadata": {"name": "o", "namespace": "ns", "uid": "uid-o"},
                             "spec": {"resourceClaims": [{"name": "s", "resourceClaimName": "shared"}]}}, Pod)
    claims_bound(s, other, al.allocate(al.prepare(s.pod_claims(other), pod_uid="uid-o"), 0, pod_uid="uid-o"))
    claims_released(s, pod2)
    assert "ns/p-g" not in s.claims                              # generated for the pod: deleted
    assert [r.uid for r in s.claims["ns/shared"].status.reserved_for] == ["uid-o"]
    claims_released(s, other)
    assert s.claims["ns/shared"].status.allocation is None      # nobody reserves it: deallocated
