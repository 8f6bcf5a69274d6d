"""``kai simulate`` on a dump of a real cluster: the local control plane, listed the way
``kubectl get ... -A -o yaml`` lists it (a ``List`` whose items carry ``apiVersion``/``kind``),
with the kinds a real cluster holds besides kai's (Ingress, Lease, Endpoints, another
operator's custom resources, ...).

The dump's foreign kinds are skipped and counted in ``warnings``; the clock defaults to the
current time, so ages written by the cluster (a PodGroup's stale timestamp) replay right,
and ``--now`` moves it.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from kai.cli import main
from kai.testing.controlplane import fake_node_manifest

pytestmark = pytest.mark.integration

CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "kai-scheduler" / "crds"
RES = {"quota": -1, "limit": -1, "overQuotaWeight": 1}
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}

# what `kubectl get <these> -A -o yaml` would be asked for: (list path, apiVersion, kind)
DUMPED = [
    ("/api/v1/nodes", "v1", "Node"),
    ("/api/v1/pods", "v1", "Pod"),
    ("/api/v1/services", "v1", "Service"),
    ("/api/v1/configmaps", "v1", "ConfigMap"),
    ("/api/v1/endpoints", "v1", "Endpoints"),
    ("/apis/apps/v1/deployments", "apps/v1", "Deployment"),
    ("/apis/networking.k8s.io/v1/ingresses", "networking.k8s.io/v1", "Ingress"),
    ("/apis/coordination.k8s.io/v1/leases", "coordination.k8s.io/v1", "Lease"),
    ("/apis/scheduling.k8s.io/v1/priorityclasses", "scheduling.k8s.io/v1", "PriorityClass"),
    ("/apis/scheduling.run.ai/v2/queues", "scheduling.run.ai/v2", "Queue"),
    ("/apis/scheduling.run.ai/v2alpha2/podgroups", "scheduling.run.ai/v2alpha2", "PodGroup"),
    ("/apis/example.com/v1/widgets", "example.com/v1", "Widget"),
]


def _ok(status, body, what):
    assert status in (200, 201, 409), f"{what}: {status} {body}"
    return body


def _wait(pred, timeout=60.0):
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError("timed out")


def _crd_established(cp, name):
    status, body = cp.api_request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    return status == 200 and any(c["type"] == "Established" and c["status"] == "True"
                                 for c in (body.get("status") or {}).get("conditions") or [])


@pytest.fixture
def cluster_dump(control_plane, kube_namespace, tmp_path):
    cp, ns = control_plane, kube_namespace
    for f in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        _ok(*cp.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd), f.name)
        _wait(lambda n=crd["metadata"]["name"]: _crd_established(cp, n))
    _ok(*cp.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD), "crd")
    _wait(lambda: _crd_established(cp, "widgets.example.com")
          and cp.api_request("GET", "/apis/example.com/v1")[0] == 200)
    node = "dump-gpu-0"
    try:
        cp.create_node(fake_node_manifest(node, gpus=4, labels={"kai-e2e/pool": "dump"}))
    except Exception as exc:   # noqa: BLE001 - rerun in the same session
        if "409" not in str(exc) and "AlreadyExists" not in str(exc):
            raise
    cp.wait_nodes_ready([node])
    q = f"dump-{ns}"
    _ok(*cp.api_request("POST", "/apis/scheduling.run.ai/v2/queues", {
        "apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": q},
        "spec": {"resources": {"gpu": RES, "cpu": RES, "memory": RES}}}), "queue")
    # a running gang below its minimum, stale since 30 s ago by the cluster's clock
    stale_since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pgs = f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups"
    _ok(*cp.api_request("POST", pgs, {
        "apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
        "metadata": {"name": "gang", "annotations": {"kai.scheduler/stale-podgroup-timestamp": stale_since}},
        "spec": {"minMember": 2, "queue": q}}), "pg gang")
    _ok(*cp.api_request("POST", pgs, {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                                      "metadata": {"name": "single"}, "spec": {"minMember": 1, "queue": q}}), "pg")

    def pod(name, group, gpus):
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "annotations": {"pod-group-name": group}},
                "spec": {"schedulerName": "kai-scheduler", "nodeSelector": {"kai-e2e/pool": "dump"},
                         "tolerations": [{"operator": "Exists"}],
                         "containers": [{"name": "c", "image": "busybox",
                                         "resources": {"requests": {"cpu": "1", "memory": "1Gi",
                                                                    "nvidia.com/gpu": str(gpus)},
                                                       "limits": {"nvidia.com/gpu": str(gpus)}}}]}}
    for name, group, gpus in (("gang-0", "gang", 1), ("single-0", "single", 2)):
        _ok(*cp.api_request("POST", f"/api/v1/namespaces/{ns}/pods", pod(name, group, gpus)), name)
    _ok(*cp.api_request("POST", f"/api/v1/namespaces/{ns}/pods/gang-0/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "gang-0"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}}), "bind gang-0")
    _wait(lambda: cp.api_request("GET", f"/api/v1/namespaces/{ns}/pods/gang-0")[1]
          .get("status", {}).get("phase") == "Running")
    # what else a namespace holds
    _ok(*cp.api_request("POST", f"/api/v1/namespaces/{ns}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}), "svc")
    _ok(*cp.api_request("POST", f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}), "ingress")
    _ok(*cp.api_request("POST", f"/apis/example.com/v1/namespaces/{ns}/widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}}),
        "widget")
    # the dump: one List per kind, items with apiVersion/kind, as kubectl writes them
    docs = []
    for path, api, kind in DUMPED:
        status, body = cp.api_request("GET", path)
        assert status == 200, (path, status, body)
        items = []
        for it in body.get("items") or []:
            if it.get("metadata", {}).get("namespace") not in (None, ns):
                continue                              # other tests' objects: not this scenario
            if kind == "Node" and it["metadata"]["name"] != node:
                continue
            if kind == "Queue" and it["metadata"]["name"] != q:
                continue
            items.append({"apiVersion": api, "kind": kind, **it})
        docs.append({"apiVersion": "v1", "kind": "List", "items": items})
    out = tmp_path / "dump.yaml"
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out, ns


def test_real_dump_with_foreign_kinds_and_the_clock(capsys, cluster_dump):
    path, ns = cluster_dump
    assert main(["simulate", "--output", "json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clock"]["source"] == "current time"
    warned = " | ".join(report["warnings"])
    for kind in ("Ingress", "Widget"):
        assert f" {kind} object(s)" in warned, (kind, report["warnings"])
    (cyc,) = report["cycles"]
    # scheduled as without the foreign objects; the gang is stale for 30 s only: kept
    assert [b["pod"] for b in cyc["bindings"]] == [] or all(b["pod"].startswith(ns) for b in cyc["bindings"])
    assert cyc["evictions"] == []
    # five minutes later the stale gang is past KAI's 60 s grace and evicted
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["simulate", "--output", "json", "--now", later, str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clock"] == {"start": later, "source": "--now", "interval": 1.0, "end": later}
    assert [e["pod"] for e in report["cycles"][0]["evictions"]] == [f"{ns}/gang-0"]
    assert {e["action"] for e in report["cycles"][0]["evictions"]} == {"stalegangeviction"}
