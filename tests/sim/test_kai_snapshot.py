"""kai.sim.kai_snapshot: KAI's ``/get-snapshot`` ZIP read by ``kai simulate``.

The archives here are written the way KAI's snapshot plugin writes them: one
``snapshot.json`` holding ``config``, ``schedulerParams`` (Go ``omitempty``: false and 0
left out) and ``rawObjects`` listed from informers (no ``kind`` / ``apiVersion``).
"""
from __future__ import annotations

import json
import os
import zipfile

import pytest

from kai.cli import main
from kai.config import default_config
from kai.sim.kai_snapshot import params_to_config, read_snapshot
from kai.sim.loader import LoadError, load_manifests

RES = {"quota": -1, "limit": -1, "overQuotaWeight": 1}


def _node(name, gpus):
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.memory": "40000"}},
            "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod(name, group, gpus, node=""):
    spec = {"schedulerName": "kai-scheduler",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi",
                                                                    "nvidia.com/gpu": str(gpus)}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "team", "uid": f"u-{name}",
                         "creationTimestamp": "2026-03-01T10:00:00Z", "annotations": {"pod-group-name": group}},
            "spec": spec, "status": {"phase": "Running" if node else "Pending"}}


def _pg(name, queue="team-a", prio="train"):
    return {"metadata": {"name": name, "namespace": "team", "uid": f"u-{name}",
                         "creationTimestamp": "2026-03-01T10:00:00Z"},
            "spec": {"minMember": 1, "queue": queue, "priorityClassName": prio}}


def snapshot_doc():
    return {
        "config": {"actions": "allocate, consolidation, reclaim, preempt, stalegangeviction",
                   "tiers": [{"plugins": [{"name": "predicates"}, {"name": "proportion"}, {"name": "priority"},
                                          {"name": "nodeavailability"}, {"name": "resourcetype"},
                                          {"name": "gpupack"}, {"name": "nodeplacement",
                                                                "arguments": {"gpu": "binpack", "cpu": "binpack"}}]}]},
        "schedulerParams": {"schedulerName": "kai-scheduler", "maxNumberConsolidationPreemptees": 16,
                            "useSchedulingSignatures": True, "fullHierarchyFairness": True,
                            "globalDefaultStalenessGracePeriod": 60_000_000_000, "schedulePeriod": 1_000_000_000},
        "rawObjects": {
            "nodes": [_node("n0", 2), _node("n1", 2)],
            "queues": [{"metadata": {"name": "dept", "creationTimestamp": "2026-03-01T09:00:00Z"},
                        "spec": {"resources": {"gpu": RES, "cpu": RES, "memory": RES}}},
                       {"metadata": {"name": "team-a", "creationTimestamp": "2026-03-01T09:00:00Z"},
                        "spec": {"parentQueue": "dept", "resources": {"gpu": RES, "cpu": RES, "memory": RES}}}],
            "priorityClasses": [{"metadata": {"name": "train"}, "value": 50}],
            "podGroups": [_pg("run"), _pg("bound"), _pg("wait")],
            "pods": [_pod("run-0", "run", 1, "n0"), _pod("bound-0", "bound", 2), _pod("wait-0", "wait", 2)],
            "bindRequests": [{"metadata": {"name": "bound-0", "namespace": "team"},
                              "spec": {"podName": "bound-0", "selectedNode": "n1", "receivedResourceType": "Regular"},
                              "status": {"phase": "Pending"}},
                             {"metadata": {"name": "wait-0", "namespace": "team"},
                              "spec": {"podName": "wait-0", "selectedNode": "n1"},
                              "status": {"phase": "Failed"}}],
            "configMaps": [{"metadata": {"name": "cm", "namespace": "team"}, "data": {"a": "b"}}],
            "csiDrivers": [{"metadata": {"name": "ebs.csi.aws.com"}, "spec": {}}],
            "persistentVolumeClaims": None,
            "topologies": [],
        },
        "discovery": {"serverVersion": {"gitVersion": "v1.34.4"}},
    }


def write_zip(path, doc, name="snapshot.json"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, json.dumps(doc))
    return str(path)


def test_read_sets_kinds_applies_bind_requests_and_keeps_config(tmp_path):
    snap = read_snapshot(write_zip(tmp_path / "s.zip", snapshot_doc()))
    kinds = {(o["apiVersion"], o["kind"]) for _label, o in snap.objects}
    assert ("v1", "Node") in kinds and ("scheduling.run.ai/v2alpha2", "PodGroup") in kinds
    assert ("storage.k8s.io/v1", "CSIDriver") in kinds
    assert not any(o["kind"] == "BindRequest" for _l, o in snap.objects)
    pods = {o["metadata"]["name"]: o for _l, o in snap.objects if o["kind"] == "Pod"}
    assert pods["bound-0"]["spec"]["nodeName"] == "n1"          # pending BindRequest = placement
    assert "nodeName" not in pods["wait-0"]["spec"]              # a failed one is not
    assert snap.applied_bind_requests == 1
    assert snap.config["actions"].startswith("allocate")
    assert snap.params["schedulerName"] == "kai-scheduler"


def test_params_follow_go_omitempty():
    cfg = default_config()
    params_to_config({"schedulerName": "kai-scheduler", "globalDefaultStalenessGracePeriod": 30_000_000_000,
                      "queueLabelKey": "team"}, cfg, "s.zip")
    # absent = false / 0 in a written params object
    assert cfg.allow_consolidating_reclaim is False and cfg.max_consolidation_preemptees == 0
    assert cfg.default_staleness_grace_period == 30.0 and cfg.queue_label_key == "team"
    assert cfg.full_hierarchy_fairness is False and cfg.use_scheduling_signatures is False
    assert cfg.restrict_node_scheduling is False and cfg.detailed_fit_errors is False
    cfg = default_config()
    notes = params_to_config({"schedulerName": "s", "allowConsolidatingReclaim": True,
                              "maxNumberConsolidationPreemptees": 4, "restrictSchedulingNodes": True,
                              "partitionParams": {"NodePoolLabelKey": "kai.scheduler/node-pool",
                                                  "NodePoolLabelValue": "pool-a"}}, cfg, "s.zip")
    assert cfg.allow_consolidating_reclaim is True and cfg.max_consolidation_preemptees == 4
    assert cfg.restrict_node_scheduling is True       # the worker labels are honoured, no note
    assert len(notes) == 1 and "pool-a" in notes[0]
    cfg = default_config()
    params_to_config({"schedulerName": "s", "fullHierarchyFairness": True, "useSchedulingSignatures": True,
                      "detailedFitErrors": True}, cfg, "s.zip")
    assert cfg.full_hierarchy_fairness and cfg.use_scheduling_signatures and cfg.detailed_fit_errors


def test_simulate_replays_a_kai_snapshot(capsys, tmp_path):
    path = write_zip(tmp_path / "snapshot.zip", snapshot_doc())
    assert main(["simulate", "--output", "json", "--now", "2026-03-01T12:00:00Z", path]) == 0
    report = json.loads(capsys.readouterr().out)
    (cyc,) = report["cycles"]
    # n0 has 1 free GPU, n1 is taken by the BindRequest's pod: wait-0 (2 GPUs) cannot fit
    assert cyc["bindings"] == []
    assert [u["podGroup"] for u in cyc["unschedulable"]] == ["team/wait"]
    assert not any("CSIDriver" in w for w in report["warnings"])   # read (volumes), not skipped
    assert any("BindRequest" in w for w in report["warnings"])
    alloc = {q["name"]: q["allocated"]["gpu"] for q in report["queues"]}
    assert alloc["team-a"] == 3 and report["clock"]["start"] == "2026-03-01T12:00:00Z"


def test_snapshot_config_is_used_unless_config_is_given(tmp_path):
    doc = snapshot_doc()
    doc["config"]["actions"] = "allocate"
    m = load_manifests([write_zip(tmp_path / "s.zip", doc)])
    where, cfg = m.config_docs[-1]
    assert cfg["actions"] == "allocate" and where.endswith("snapshot config")


@pytest.mark.parametrize("content, needle", [
    (b"not a zip", "not a ZIP archive"),
    ("json", "not valid JSON"),
    ("nojson", "no snapshot.json"),
    ("norawobjects", "no rawObjects"),
    ("badlist", "rawObjects.pods: expected a list"),
    ("badpod", "document"),
])
def test_bad_snapshots_exit_2_naming_the_problem(capsys, tmp_path, content, needle):
    path = tmp_path / "s.zip"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "json":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("snapshot.json", "{nope")
    elif content == "nojson":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hi")
    elif content == "norawobjects":
        write_zip(path, {"config": {}})
    elif content == "badlist":
        write_zip(path, {"rawObjects": {"pods": {"a": 1}}})
    else:
        doc = snapshot_doc()
        doc["rawObjects"]["pods"][0]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
        write_zip(path, doc)
    with pytest.raises(LoadError) as exc:
        load_manifests([str(path)])
    assert needle in str(exc.value) and str(path) in str(exc.value)
    assert main(["simulate", str(path)]) == 2
    assert needle in capsys.readouterr().err


# ------------------------------------------------------------------ a snapshot from KAI itself
REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "kai-snapshot-72de64f.zip")


def test_real_kai_snapshot_replays_and_kai_decides_as_kai_did(capsys, tmp_path):
    """``data/kai-snapshot-72de64f.zip`` is what KAI-Scheduler (built from commit 72de64f)
    served at /get-snapshot on the local control plane: 3 nodes x 4 GPUs, queues research ->
    team-a / team-b (quota 6 each), a running 2-pod gang, and pending work KAI had just
    decided on (its BindRequests are in the snapshot: a 3-pod gang, a 4-GPU build pod, a
    CPU pod; an 8-GPU pod fits nowhere).

    Replayed as it is, kai counts the BindRequests as placements and has nothing left to do
    but report the 8-GPU pod. With the BindRequests taken out, kai decides on the same pods:
    the same pods bound, per PodGroup on the same nodes (which of a gang's identical pods
    lands where is a tie KAI breaks by random UIDs), the same pod left pending."""
    with zipfile.ZipFile(REAL) as z:
        doc = json.loads(z.read("snapshot.json"))
    kai_did: dict[str, list[str]] = {}
    pods = {p["metadata"]["name"]: p for p in doc["rawObjects"]["pods"]}
    for br in doc["rawObjects"]["bindRequests"]:
        group = pods[br["spec"]["podName"]]["metadata"]["annotations"]["pod-group-name"]
        kai_did.setdefault(f"ml/{group}", []).append(br["spec"]["selectedNode"])
    assert sum(len(v) for v in kai_did.values()) == 5

    assert main(["simulate", "--output", "json", REAL]) == 0
    as_is = json.loads(capsys.readouterr().out)
    assert as_is["cycles"][0]["bindings"] == []
    assert [u["podGroup"] for u in as_is["cycles"][0]["unschedulable"]] == ["ml/b-huge"]
    assert any("5 pod(s) placed on the node of their pending BindRequest" in w for w in as_is["warnings"])

    doc["rawObjects"]["bindRequests"] = []
    fresh = write_zip(tmp_path / "before-kai.zip", doc)
    assert main(["simulate", "--output", "json", fresh]) == 0
    report = json.loads(capsys.readouterr().out)
    (cyc,) = report["cycles"]
    by_pod = {b["pod"].split("/")[1]: b["node"] for b in cyc["bindings"]}
    kai_decided: dict[str, list[str]] = {}
    for name, node in by_pod.items():
        group = pods[name]["metadata"]["annotations"]["pod-group-name"]
        kai_decided.setdefault(f"ml/{group}", []).append(node)
    assert {k: sorted(v) for k, v in kai_decided.items()} == {k: sorted(v) for k, v in kai_did.items()}
    assert [u["podGroup"] for u in cyc["unschedulable"]] == ["ml/b-huge"]
