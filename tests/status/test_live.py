"""The status document from one listing (no API server: ``build_document`` is pure).

Fair shares come from kai's proportion code through a scheduler session; reasons come from
what the scheduler wrote (PodGroup conditions, then pods' PodScheduled); GPU reservation pods
are left out. The live path (lists, credentials, CLI) is tested in tests/e2e/test_kai_status_e2e.py.
"""
from __future__ import annotations

import msgspec
import pytest

from kai.api.k8s import Node, Pod, PodGroup, Queue
from kai.config import default_config
from kai.status.live import Listing, StatusError, build_document, connect

NOW = 1_767_225_600.0      # 2026-01-01T00:00:00Z


def node(name, gpus, pool=""):
    labels = {"kai.scheduler/node-pool": pool} if pool else {}
    return msgspec.convert({"metadata": {"name": name, "labels": labels},
                            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110",
                                                       "nvidia.com/gpu": str(gpus)}}}, Node)


def queue(name, parent="", gpu_quota=-1, gpu_limit=-1, status=None):
    r = {"quota": -1, "limit": -1, "overQuotaWeight": 1}
    spec = {"resources": {"gpu": {"quota": gpu_quota, "limit": gpu_limit, "overQuotaWeight": 1}, "cpu": r,
                          "memory": r}}
    if parent:
        spec["parentQueue"] = parent
    return msgspec.convert({"metadata": {"name": name, "creationTimestamp": "2025-01-01T00:00:00Z"},
                            "spec": spec, "status": status or {}}, Queue)


def podgroup(name, queue_name, min_member=1, conditions=None, created="2025-12-31T23:00:00Z", priority=""):
    return msgspec.convert({"metadata": {"name": name, "namespace": "t", "uid": f"uid-{name}",
                                         "creationTimestamp": created},
                            "spec": {"minMember": min_member, "queue": queue_name, "priorityClassName": priority},
                            "status": {"schedulingConditions": conditions} if conditions else {}}, PodGroup)


def pod(name, group, gpus=1, node_name="", ns="t", labels=None, conditions=None, fraction=None):
    ann = {"pod-group-name": group} if group else {}
    if fraction:
        ann["gpu-fraction"] = fraction
    req = {"cpu": "1", "memory": "1Gi"}
    if gpus:
        req["nvidia.com/gpu"] = str(gpus)
    return msgspec.convert({"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}",
                                         "annotations": ann, "labels": labels or {}},
                            "spec": {"schedulerName": "kai-scheduler", "nodeName": node_name,
                                     "containers": [{"name": "c", "resources": {"requests": req}}]},
                            "status": {"phase": "Running" if node_name else "Pending",
                                       "conditions": conditions or []}}, Pod)


def cond(message, when="2026-01-01T00:00:00Z"):
    return {"type": "UnschedulableOnNodePool", "nodePool": "default", "status": "True",
            "lastTransitionTime": when, "reasons": [{"reason": "PodSchedulingErrors", "message": message}]}


@pytest.fixture
def listing():
    big = "gang of 2 pods: only 0 could be placed; pod t/big-0: 0/2 nodes fit: 2 insufficient nvidia.com/gpu"
    lst = Listing(server="https://example:6443")
    lst.objects["Node"] = [node("n0", 8, "a100"), node("n1", 8, "a100")]
    lst.objects["Queue"] = [queue("root"), queue("team-a", "root", 4, status={"conditions": [
                                {"type": "OverQuota", "status": "True", "reason": "AllocatedOverDeserved"}]}),
                            queue("team-b", "root", 8), queue("lost", "no-such-parent")]
    lst.objects["PodGroup"] = [
        podgroup("run", "team-a", 2),
        podgroup("big", "team-b", 2, conditions=[cond("old reason", "2025-12-31T00:00:00Z"), cond(big)]),
        podgroup("quiet", "team-a", created="2025-12-31T22:00:00Z"),
        podgroup("urgent", "team-b", priority="inference",
                 created="2025-12-31T23:30:00Z"),
        podgroup("frac", "team-b"),
    ]
    lst.objects["Pod"] = [
        pod("run-0", "run", 3, "n0"), pod("run-1", "run", 3, "n0"),
        pod("big-0", "big", 8), pod("big-1", "big", 8),
        pod("quiet-0", "quiet", 1),
        pod("urgent-0", "urgent", 1, conditions=[{"type": "PodScheduled", "status": "False",
                                                  "reason": "Unschedulable",
                                                  "message": "OverLimit: queue 'team-b' would use 9 gpu"}]),
        pod("frac-0", "frac", 0, "n1", fraction="0.5"),
        # the reservation pod holding frac-0's device: not counted again
        pod("gpu-reservation-n1-x", "", 1, "n1", ns="kai-resource-reservation",
            labels={"app": "kai-resource-reservation"}),
    ]
    return lst


def test_queue_tree_fair_share_and_usage(listing):
    doc = build_document(listing, now=NOW)
    qs = {q["name"]: q for q in doc["queues"]}
    assert [q["name"] for q in doc["queues"]] == ["root", "team-a", "team-b", "lost"]
    assert (qs["team-a"]["depth"], qs["team-a"]["parent"], qs["root"]["leaf"]) == (1, "root", False)
    assert qs["team-a"]["quota"]["gpu"] == 4 and qs["root"]["quota"]["gpu"] == -1
    assert qs["team-a"]["allocated"]["gpu"] == 6 and qs["team-b"]["allocated"]["gpu"] == 0.5
    assert qs["team-a"]["pending"]["gpu"] == 1 and qs["team-b"]["pending"]["gpu"] == 17
    assert qs["root"]["allocated"]["gpu"] == 6.5
    # kai's proportion over 16 GPUs: quotas first (4 + 8), the 4 left by over-quota weight
    assert qs["team-a"]["fairShare"]["gpu"] + qs["team-b"]["fairShare"]["gpu"] == pytest.approx(16)
    assert qs["team-a"]["fairShare"]["gpu"] >= 4 and qs["team-b"]["fairShare"]["gpu"] >= 8
    assert qs["team-a"]["conditions"] == ["OverQuota"]
    assert qs["lost"]["problem"] == "parent queue 'no-such-parent' does not exist"
    assert qs["lost"]["fairShare"] is None
    assert doc["capacity"]["gpu"] == 16


def test_pending_jobs_reasons_and_order(listing):
    p = build_document(listing, now=NOW)["pending"]
    assert (p["podGroups"], p["pods"]) == (3, 4)
    keys = [r["podGroup"] for r in p["top"]]
    assert keys == ["t/urgent", "t/quiet", "t/big"]      # priority first (inference 125), then oldest
    big = p["top"][2]
    assert big["source"] == "PodGroup" and big["reasons"][0].startswith("gang of 2 pods")   # the newest condition
    assert big["cause"] == "insufficient nvidia.com/gpu" and big["ageSeconds"] == 3600
    assert (big["pendingPods"], big["pods"], big["minMember"]) == (2, 2, 2)
    urgent = p["top"][0]
    assert urgent["source"] == "Pod" and urgent["cause"] == "OverLimit"
    quiet = p["top"][1]
    assert quiet["source"] == "" and quiet["reasons"] == [] and quiet["cause"] == "no reason written yet"
    assert {c["cause"]: c["count"] for c in p["byCause"]} == {
        "OverLimit": 1, "insufficient nvidia.com/gpu": 1, "no reason written yet": 1}
    assert build_document(listing, now=NOW, top=1)["pending"]["top"][0]["podGroup"] == "t/urgent"


def test_gpu_occupancy_leaves_reservation_pods_out(listing):
    g = build_document(listing, now=NOW)["gpu"]
    assert g["pools"] == [{"name": "a100", "nodes": 2, "gpus": 16, "whole": 6, "fractional": 0.5,
                           "fragmented": 0.5, "free": 9, "largestFree": 7}]
    assert g["total"]["gpus"] == 16


def test_counts_units_and_no_crds(listing):
    listing.objects["Queue"] = []
    listing.objects["PodGroup"] = []
    listing.missing = ["PodGroup", "Queue"]
    doc = build_document(listing, now=NOW)
    assert doc["missingKinds"] == ["PodGroup", "Queue"]
    assert doc["queues"] == [] and doc["pending"]["podGroups"] == 0
    assert doc["units"] == {"gpu": "devices", "cpu": "millicores", "memory": "bytes"}
    assert doc["counts"]["pods"] == 8 and doc["counts"]["kaiPods"] == 8
    assert any(p["object"] == "Pod t/run-0" and "does not exist" in p["reason"] for p in doc["problems"])


def test_connect_without_kubeconfig_is_a_status_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(StatusError, match="no usable kubeconfig"):
        connect(str(tmp_path / "missing"))
    cfg = tmp_path / "cfg"
    cfg.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://10.0.0.1:6443', "
                   "insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: abc}}]\n"
                   "contexts: [{name: x, context: {cluster: c, user: u}}, {name: y, context: {cluster: c, user: u}}]\n"
                   "current-context: x\n")
    client = connect(str(cfg), context="y")
    assert client.creds.server == "https://10.0.0.1:6443"
    assert client.creds.token() == "abc" and client.creds.insecure
    with pytest.raises(StatusError):
        connect(str(cfg), context="nope")


def test_an_object_outside_the_model_is_a_problem_not_a_failure():
    """One undecodable object is listed under problems; the others still count (paged list)."""
    import json as _json

    from kai.status.live import list_cluster

    good = {"metadata": {"name": "q1"}, "spec": {"resources": {}}}
    bad = {"metadata": {"name": "q2"}, "spec": {"priority": "high"}}       # priority must be an int
    pages = {"": {"metadata": {"continue": "p2"}, "items": [good]}, "p2": {"metadata": {}, "items": [bad]}}

    class OnePageAtATime:        # the API server's paged list answer, as bytes
        class creds:
            server = "https://stub"

        def request(self, method, path, params=None, **kw):
            if "queues" in path:
                return _json.dumps(pages[params.get("continue", "")]).encode()
            if "configmaps" in path:
                raise AssertionError("config given: no ConfigMap read")
            return b'{"metadata": {}, "items": []}'

    lst = list_cluster(OnePageAtATime(), config=default_config())
    assert [q.metadata.name for q in lst.objects["Queue"]] == ["q1"]
    assert lst.problems[0]["object"] == "Queue q2" and "does not fit kai's model" in lst.problems[0]["reason"]
    assert lst.calls == 6                      # two pages of queues + one list per other kind
    doc = build_document(lst, now=NOW)
    assert doc["problems"][0]["object"] == "Queue q2"
