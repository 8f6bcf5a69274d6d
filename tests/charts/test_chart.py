"""The Helm chart charts/kai-scheduler: lint, render, schema, server-side dry-run, RBAC.

Uses the real ``helm`` CLI built by hack/tools/build-helm.sh (``$KAI_HELM``, else
``~/.cache/kai-tools/bin/helm``, else ``helm`` on PATH). Without it the tests are skipped,
except with CI=true where that is a failure. The dry-run and RBAC tests run against the
local control plane (``control_plane`` fixture) and are marked ``integration``.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kai.config import DEFAULT_ACTIONS, DEFAULT_PLUGINS, parse_config

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kai-scheduler"
CRD_DIR = CHART / "crds"
NS = "kai-scheduler"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _find_helm() -> str | None:
    for cand in (os.environ.get("KAI_HELM"), str(Path.home() / ".cache" / "kai-tools" / "bin" / "helm")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return shutil.which("helm")


@pytest.fixture(scope="module")
def helm() -> str:
    path = _find_helm()
    if path is None:
        msg = "helm not found: build it with `bash hack/tools/build-helm.sh` (needs Go)"
        if _in_ci():
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    return path


def _set_args(values: dict[str, Any] | None) -> list[str]:
    args: list[str] = []
    for k, v in (values or {}).items():
        args += ["--set-json", f"{k}={json.dumps(v)}"]
    return args


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/kai-helm-cache",
                               "HELM_CONFIG_HOME": "/tmp/kai-helm-config", "HELM_DATA_HOME": "/tmp/kai-helm-data"})
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def render(helm: str, values: dict[str, Any] | None = None, release: str = "kai-scheduler",
           extra: tuple[str, ...] = ()) -> list[dict]:
    out = run_helm(helm, "template", release, str(CHART), "--namespace", NS, *_set_args(values), *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def scheduler_config(docs: list[dict]) -> tuple[dict, Any]:
    cm = one(docs, "ConfigMap")
    raw = yaml.safe_load(cm["data"]["config.yaml"])
    return raw, parse_config(raw, "chart ConfigMap")     # kai itself must accept it


def plugin_names(raw: dict) -> list[str]:
    return [p["name"] for tier in raw["tiers"] for p in tier["plugins"]]


def container(docs: list[dict]) -> dict:
    dep = one(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


# ---------------------------------------------------------------------- lint and render

def test_lint(helm):
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NS)
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", [
    {"scheduler.placementStrategy": "spread", "scheduler.replicaCount": 3, "global.gpuSharing": True},
    {"metrics.serviceMonitor.enabled": True, "defaultQueue.createDefaultQueue": False},
])
def test_lint_non_default_values(helm, values):
    run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NS, *_set_args(values))


def test_default_render(helm):
    docs = render(helm)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role",
                            "RoleBinding", "Service", "Deployment", "Queue", "Queue"] + ["PriorityClass"] * 4)
    namespaced = {"ServiceAccount", "ConfigMap", "Role", "RoleBinding", "Service", "Deployment"}
    for d in docs:
        if d["kind"] in namespaced:
            assert d["metadata"]["namespace"] == NS, d["metadata"]
        else:
            assert "namespace" not in d["metadata"], d["metadata"]

    # the scheduler config is KAI's default, and kai parses it to its own default
    raw, cfg = scheduler_config(docs)
    assert raw["actions"] == "allocate, consolidation, reclaim, preempt, stalegangeviction"
    assert cfg.actions == DEFAULT_ACTIONS
    assert plugin_names(raw) == DEFAULT_PLUGINS
    assert cfg.plugin_args("nodeplacement") == {"gpu": "binpack", "cpu": "binpack"}

    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"] == "kai-scheduler"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    c = container(docs)
    assert c["args"][c["args"].index("scheduler") + 1:][:5] == [
        "--config=/etc/kai/config.yaml", "--scheduler-name=kai-scheduler", "--namespace=kai-scheduler",
        "--schedule-period=1", "--metrics-port=8080"]
    assert "--leader-elect" not in c["args"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert c["image"] == "kai:0.1.0"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/kai", "/tmp"} <= mounts     # read-only root: /tmp is an emptyDir

    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]

    pcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PriorityClass"}
    assert {k: v["value"] for k, v in pcs.items()} == {"train": 50, "build-preemptible": 75, "build": 100,
                                                       "inference": 125}
    assert all("preemptionPolicy" not in v and v["globalDefault"] is False for v in pcs.values())

    parent = one(docs, "Queue", "default-parent-queue")
    child = one(docs, "Queue", "default-queue")
    assert child["spec"]["parentQueue"] == "default-parent-queue"
    assert "parentQueue" not in parent["spec"]
    for q in (parent, child):
        assert q["apiVersion"] == "scheduling.run.ai/v2"
        assert q["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        for r in ("gpu", "cpu", "memory"):
            assert q["spec"]["resources"][r] == {"quota": 0, "limit": -1, "overQuotaWeight": 1}


def test_spread_strategy(helm):
    raw, cfg = scheduler_config(render(helm, {"scheduler.placementStrategy": "spread"}))
    names = plugin_names(raw)
    assert "gpuspread" in names and "gpupack" not in names and "gpusharingorder" not in names
    assert names.index("gpuspread") < names.index("nodeplacement")
    assert cfg.plugin_args("nodeplacement") == {"gpu": "spread", "cpu": "spread"}
    assert "consolidation" not in cfg.actions
    assert cfg.actions == ["allocate", "reclaim", "preempt", "stalegangeviction"]


def test_mixed_strategy_map(helm):
    raw, cfg = scheduler_config(render(helm, {"scheduler.placementStrategy": {"gpu": "binpack", "cpu": "spread"}}))
    assert cfg.plugin_args("nodeplacement") == {"gpu": "binpack", "cpu": "spread"}
    assert "gpupack" in plugin_names(raw) and "gpusharingorder" in plugin_names(raw)
    assert "consolidation" not in cfg.actions          # either resource spread drops consolidation


def test_custom_actions_and_plugins(helm):
    raw, cfg = scheduler_config(render(helm, {
        "scheduler.actions": {"consolidation": {"enabled": False}, "preempt": {"priority": 600},
                              "stalegangeviction": None},
        "scheduler.plugins": {"elastic": {"enabled": False}, "predicates": {"priority": 50},
                              "proportion": {"arguments": {"kValue": "2.0", "relcaimerSaturationMultiplier": 1.5}},
                              "reflectjoborder": {"priority": 1050}},
        "scheduler.queueDepthPerAction": {"reclaim": 100},
    }))
    assert raw["actions"] == "preempt, allocate, reclaim, stalegangeviction"
    names = plugin_names(raw)
    assert "elastic" not in names
    assert names[-1] == "predicates"                       # priority 50: after gpusharingorder (100)
    assert names.index("reflectjoborder") == names.index("ray") + 1    # 1050: after ray (1100)
    assert cfg.plugin_args("proportion") == {"kValue": "2.0", "relcaimerSaturationMultiplier": "1.5"}
    assert cfg.queue_depth_per_action == {"reclaim": 100}


def test_plugin_arguments_replace_defaults(helm):
    _, cfg = scheduler_config(render(helm, {"scheduler.plugins": {"nodeplacement": {"arguments": {"gpu": "spread"}}}}))
    assert cfg.plugin_args("nodeplacement") == {"gpu": "spread"}   # KAI: arguments replace, not merge


@pytest.mark.parametrize("values, leader", [
    ({}, False),
    ({"scheduler.replicaCount": 2}, True),
    ({"global.leaderElection": True}, True),
])
def test_leader_election(helm, values, leader):
    docs = render(helm, values)
    assert ("--leader-elect" in container(docs)["args"]) is leader
    assert one(docs, "Deployment")["spec"]["replicas"] == values.get("scheduler.replicaCount", 1)


def test_config_change_rolls_pods(helm):
    def checksum(values):
        return one(render(helm, values), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum({}) != checksum({"scheduler.placementStrategy": "spread"})


def test_image_and_flags(helm):
    docs = render(helm, {"global.registry": "registry.example.com/ml/", "image.tag": "1.2.3",
                         "scheduler.additionalArgs": ["--bind-workers=32"], "scheduler.verbosity": 2,
                         "scheduler.schedulerName": "kai-b", "scheduler.ports.metricsPort": 9090})
    c = container(docs)
    assert c["image"] == "registry.example.com/ml/kai:1.2.3"
    assert c["args"][0] == "-vv" and c["args"][1] == "scheduler"
    assert "--scheduler-name=kai-b" in c["args"] and c["args"][-1] == "--bind-workers=32"
    assert "--metrics-port=9090" in c["args"] and c["ports"][0]["containerPort"] == 9090
    # the flags the chart passes are flags `kai scheduler` has
    from kai.cli import build_parser
    args = build_parser().parse_args(c["args"])
    assert args.command == "scheduler" and args.scheduler_name == "kai-b" and args.metrics_port == 9090


def test_service_monitor(helm):
    docs = render(helm, {"metrics.serviceMonitor.enabled": True, "metrics.serviceMonitor.labels": {"release": "prom"}})
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    svc_labels = one(docs, "Service")["metadata"]["labels"]
    assert all(svc_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert not [d for d in render(helm) if d["kind"] == "ServiceMonitor"]


def test_gpu_sharing_rbac(helm):
    docs = render(helm, {"global.gpuSharing": True})
    assert one(docs, "Namespace")["metadata"]["name"] == "kai-resource-reservation"
    role = one(docs, "Role", "kai-scheduler-resource-reservation")
    assert role["metadata"]["namespace"] == "kai-resource-reservation"
    assert "create" in role["rules"][0]["verbs"]
    rules = one(docs, "ClusterRole")["rules"]
    assert any("configmaps" in r["resources"] and "create" in r["verbs"] for r in rules)
    # without GPU sharing only the ConfigMap predicate's list/watch remains
    plain = [r for r in one(render(helm), "ClusterRole")["rules"] if "configmaps" in r["resources"]]
    assert [r["verbs"] for r in plain] == [["list", "watch"]]


def test_default_queues_install_only(helm):
    assert len([d for d in render(helm, extra=("--is-upgrade",)) if d["kind"] == "Queue"]) == 0
    assert len([d for d in render(helm, {"defaultQueue.createDefaultQueue": False}) if d["kind"] == "Queue"]) == 0


@pytest.mark.integration
def test_helm_install_dry_run_and_notes(helm, control_plane):
    """`helm install --dry-run=server` against the test API server (helm's own checks,
    including the kubeVersion constraint against the real server version), and NOTES."""
    _install_crds(Api(control_plane, control_plane.token))
    out = run_helm(helm, "install", "kai-scheduler", str(CHART), "--namespace", NS, "--create-namespace",
                   "--kubeconfig", control_plane.kubeconfig, "--dry-run=server",
                   "--set", "scheduler.replicaCount=2").stdout
    assert "leader election on" in out and "kubectl describe pod" in out
    assert "default-parent-queue -> default-queue" in out


@pytest.mark.parametrize("values, where", [
    ({"scheduler.placementStrategy": "pack"}, "placementStrategy"),
    ({"scheduler.placementStrategy": {"gpu": "tight"}}, "placementStrategy"),
    ({"scheduler.actions": {"backfill": {"enabled": True}}}, "backfill"),
    ({"scheduler.actions": {"allocate": {"enabled": "yes"}}}, "allocate"),
    ({"scheduler.plugins": {"mycustomplugin": {"enabled": True}}}, "mycustomplugin"),
    ({"scheduler.plugins": {"proportion": {"args": {"kValue": "2"}}}}, "proportion"),
    ({"scheduler.replicaCount": -1}, "replicaCount"),
    ({"scheduler.replicaCount": "two"}, "replicaCount"),
    ({"scheduler.schedulePeriod": 0}, "schedulePeriod"),
    ({"scheduler.queueDepthPerAction": {"reclaim": 0}}, "reclaim"),
    ({"image.pullPolicy": "Sometimes"}, "pullPolicy"),
    ({"defaultQueue.childResources": {"gpu": {"quota": "lots"}}}, "quota"),
    ({"schedulerName": "kai"}, "schedulerName"),                # top level typo
])
def test_schema_rejects(helm, values, where):
    proc = run_helm(helm, "template", "x", str(CHART), *_set_args(values), check=False)
    assert proc.returncode != 0, f"{values} was accepted"
    assert "schema" in proc.stderr and where in proc.stderr, proc.stderr


# ---------------------------------------------------------------------- against an API server

class Api:
    """Raw HTTPS to the test kube-apiserver with a bearer token (admin or a ServiceAccount's)."""

    def __init__(self, control_plane, token: str) -> None:
        self.port = control_plane.apiserver_port
        self.token = token
        self.ctx = ssl.create_default_context(cafile=control_plane.ca_file)
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.ctx)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind, from discovery."""
        if api_version not in self._resources:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, body = self.request("GET", base)
            assert status == 200, f"discovery {base}: {status} {body}"
            self._resources[api_version] = {r["kind"]: (r["name"], r["namespaced"])
                                            for r in body["resources"] if "/" not in r["name"]}
        return self._resources[api_version][kind]

    def path(self, obj: dict, named: bool = False) -> str:
        api_version = obj["apiVersion"]
        plural, namespaced = self.resource(api_version, obj["kind"])
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        ns = f"/namespaces/{obj['metadata'].get('namespace', 'default')}" if namespaced else ""
        return f"{base}{ns}/{plural}" + (f"/{obj['metadata']['name']}" if named else "")

    def create(self, obj: dict, dry_run: bool = False) -> tuple[int, Any]:
        return self.request("POST", self.path(obj) + ("?dryRun=All" if dry_run else ""), obj)

    def delete(self, obj: dict) -> None:
        self.request("DELETE", self.path(obj, named=True))


def _wait(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _install_crds(api: Api) -> None:
    files = sorted(CRD_DIR.glob("*.yaml"))
    if not files:
        msg = f"no CRDs in {CRD_DIR}"
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    for f in files:
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd:
                continue
            status, body = api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            assert status in (201, 409), f"CRD {f.name}: {status} {body}"
            name = crd["metadata"]["name"]

            def established(name=name) -> bool:
                _, c = api.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                return any(x["type"] == "Established" and x["status"] == "True"
                           for x in (c.get("status") or {}).get("conditions") or [])
            _wait(established, what=f"CRD {name} established")
    # discovery of the new groups can lag behind Established
    _wait(lambda: api.request("GET", "/apis/scheduling.run.ai/v2")[0] == 200, what="scheduling.run.ai/v2 served")


def _ensure_namespace(api: Api, name: str) -> None:
    status, body = api.request("POST", "/api/v1/namespaces",
                               {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert status in (201, 409), f"namespace {name}: {status} {body}"


@pytest.mark.integration
@pytest.mark.parametrize("values", [
    {},
    {"scheduler.placementStrategy": "spread", "scheduler.replicaCount": 2, "global.gpuSharing": True,
     "scheduler.plugins": {"proportion": {"arguments": {"kValue": "2"}}}},
], ids=["default", "spread-ha-gpusharing"])
def test_server_side_dry_run(helm, control_plane, values):
    """Every rendered manifest is accepted by kube-apiserver (schema, CRD validation, RBAC
    escalation checks) with dryRun=All. CRDs are applied for real first."""
    api = Api(control_plane, control_plane.token)
    _install_crds(api)
    _ensure_namespace(api, NS)
    docs = render(helm, values, release=f"dry-{uuid.uuid4().hex[:6]}")
    for d in docs:
        if d["kind"] == "Namespace":       # dry-run of a namespace does not make it usable for the rest
            _ensure_namespace(api, d["metadata"]["name"])
    failures = []
    for d in docs:
        status, body = api.create(d, dry_run=True)
        # 409: a cluster-scoped singleton (PriorityClass, Queue) another test created for real
        if status not in (200, 201, 409):
            failures.append(f"{d['kind']} {d['metadata']['name']}: {status} {body.get('message') if isinstance(body, dict) else body}")
    assert not failures, "\n".join(failures)


# what the scheduler does (kai/cache/*, kai/controller/*, kai/podgrouper/controller.py)
ALLOWED = [
    # (verb, group, resource, subresource, namespace)
    ("list", "", "nodes", "", ""), ("watch", "", "nodes", "", ""), ("get", "", "namespaces", "", ""),
    ("list", "", "pods", "", ""), ("watch", "", "pods", "", ""),
    ("create", "", "pods", "binding", "team-a"), ("delete", "", "pods", "", "team-a"),
    ("patch", "", "pods", "status", "team-a"), ("update", "", "pods", "status", "team-a"),
    ("patch", "", "pods", "", "team-a"),                       # pod-grouper annotation
    ("create", "", "events", "", "team-a"), ("patch", "", "events", "", "team-a"),
    ("list", "scheduling.k8s.io", "priorityclasses", "", ""),
    ("watch", "scheduling.run.ai", "queues", "", ""), ("update", "scheduling.run.ai", "queues", "status", ""),
    ("list", "scheduling.run.ai", "podgroups", "", ""), ("create", "scheduling.run.ai", "podgroups", "", "team-a"),
    ("update", "scheduling.run.ai", "podgroups", "", "team-a"),
    ("update", "scheduling.run.ai", "podgroups", "status", "team-a"),
    ("patch", "scheduling.run.ai", "podgroups", "status", "team-a"),
    ("watch", "kai.scheduler", "topologies", "", ""),
    ("get", "batch", "jobs", "", "team-a"), ("get", "apps", "replicasets", "", "team-a"),
    ("get", "apps", "deployments", "", "team-a"), ("get", "apps", "statefulsets", "", "team-a"),
    ("get", "kubeflow.org", "pytorchjobs", "", "team-a"), ("get", "jobset.x-k8s.io", "jobsets", "", "team-a"),
    ("get", "leaderworkerset.x-k8s.io", "leaderworkersets", "", "team-a"),
    ("get", "coordination.k8s.io", "leases", "", NS), ("create", "coordination.k8s.io", "leases", "", NS),
    ("update", "coordination.k8s.io", "leases", "", NS), ("watch", "coordination.k8s.io", "leases", "", NS),
    # volumes: bind a PV to its claim, set a claim's selected-node, read the storage objects
    ("update", "", "persistentvolumes", "", ""), ("watch", "", "persistentvolumes", "", ""),
    ("patch", "", "persistentvolumeclaims", "", "team-a"), ("update", "", "persistentvolumeclaims", "", "team-a"),
    ("list", "", "persistentvolumeclaims", "", ""),
    ("watch", "storage.k8s.io", "storageclasses", "", ""), ("watch", "storage.k8s.io", "csinodes", "", ""),
    ("watch", "storage.k8s.io", "csidrivers", "", ""), ("watch", "storage.k8s.io", "csistoragecapacities", "", ""),
    ("watch", "storage.k8s.io", "volumeattachments", "", ""),
    ("list", "", "configmaps", "", ""), ("watch", "", "configmaps", "", ""),     # ConfigMap predicate
    ("watch", "resource.k8s.io", "resourceslices", "", ""), ("list", "resource.k8s.io", "deviceclasses", "", ""),
    ("watch", "resource.k8s.io", "resourceclaimtemplates", "", ""),
    ("get", "resource.k8s.io", "resourceclaims", "", "team-a"), ("patch", "resource.k8s.io", "resourceclaims", "", "team-a"),
    ("patch", "resource.k8s.io", "resourceclaims", "status", "team-a"),
    ("update", "resource.k8s.io", "resourceclaims", "status", "team-a"),
]
DENIED = [
    ("delete", "", "nodes", "", ""), ("update", "", "nodes", "", ""), ("patch", "", "nodes", "", ""),
    ("delete", "", "persistentvolumes", "", ""), ("create", "", "persistentvolumes", "", ""),
    ("delete", "", "persistentvolumeclaims", "", "team-a"), ("update", "storage.k8s.io", "storageclasses", "", ""),
    ("get", "", "secrets", "", NS), ("list", "", "secrets", "", ""), ("get", "", "secrets", "", "team-a"),
    ("create", "", "pods", "", "team-a"), ("update", "", "pods", "", "team-a"),
    ("create", "", "pods", "exec", "team-a"), ("get", "", "pods", "log", "team-a"),
    ("get", "", "configmaps", "", "team-a"), ("create", "", "configmaps", "", "team-a"),
    ("create", "", "namespaces", "", ""), ("delete", "", "namespaces", "", ""),
    ("create", "scheduling.run.ai", "queues", "", ""), ("delete", "scheduling.run.ai", "queues", "", ""),
    ("delete", "scheduling.run.ai", "podgroups", "", "team-a"),
    ("create", "kai.scheduler", "topologies", "", ""),
    ("delete", "batch", "jobs", "", "team-a"), ("update", "apps", "deployments", "", "team-a"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""),
    ("create", "scheduling.k8s.io", "priorityclasses", "", ""),
    ("get", "coordination.k8s.io", "leases", "", "kube-system"),   # leases only in its own namespace
    ("delete", "coordination.k8s.io", "leases", "", NS),
    ("create", "", "serviceaccounts", "token", NS),
    ("create", "apiextensions.k8s.io", "customresourcedefinitions", "", ""),
    ("create", "resource.k8s.io", "resourceclaims", "", "team-a"), ("delete", "resource.k8s.io", "resourceclaims", "", "team-a"),
    ("update", "resource.k8s.io", "resourceslices", "", ""), ("create", "resource.k8s.io", "deviceclasses", "", ""),
]


def _ssar(api: Api, verb: str, group: str, resource: str, sub: str, ns: str) -> bool:
    attrs = {"verb": verb, "group": group, "resource": resource}
    if sub:
        attrs["subresource"] = sub
    if ns:
        attrs["namespace"] = ns
    status, body = api.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                               {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                "spec": {"resourceAttributes": attrs}})
    assert status == 201, f"SelfSubjectAccessReview: {status} {body}"
    return bool(body["status"].get("allowed"))


@pytest.mark.integration
def test_rbac_least_privilege(helm, control_plane):
    """Create the chart's ServiceAccount and RBAC for real, take a token for that
    ServiceAccount (TokenRequest), and ask the API server, as that ServiceAccount, what it may
    do: everything the scheduler does, nothing unrelated."""
    admin = Api(control_plane, control_plane.token)
    _ensure_namespace(admin, NS)
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    docs = [d for d in render(helm, release=release)
            if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    assert len(docs) == 5
    created = []
    try:
        for d in docs:
            status, body = admin.create(d)
            assert status == 201, f"{d['kind']} {d['metadata']['name']}: {status} {body}"
            created.append(d)
        sa = one(docs, "ServiceAccount")["metadata"]["name"]
        kubeconfig = control_plane.service_account_kubeconfig(NS, sa, create=False, expiration_seconds=600)
        token = json.loads(Path(kubeconfig).read_text())["users"][0]["user"]["token"]
        api = Api(control_plane, token)
        # the authorizer's RBAC cache follows the bindings within moments
        _wait(lambda: _ssar(api, "create", "", "pods", "binding", "team-a"), what="RBAC binding in effect")

        wrong = [a for a in ALLOWED if not _ssar(api, *a)]
        assert not wrong, f"the scheduler's ServiceAccount may not: {wrong}"
        too_much = [a for a in DENIED if _ssar(api, *a)]
        assert not too_much, f"the scheduler's ServiceAccount may, but should not: {too_much}"

        # and for real, with the token: reads work, secrets and node writes are forbidden
        assert api.request("GET", "/api/v1/nodes?limit=1")[0] == 200
        assert api.request("GET", "/apis/scheduling.run.ai/v2alpha2/podgroups?limit=1")[0] in (200, 404)
        assert api.request("GET", f"/api/v1/namespaces/{NS}/secrets")[0] == 403
        assert api.request("DELETE", "/api/v1/nodes/no-such-node")[0] == 403
        status, _ = api.request("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases?dryRun=All",
                                {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "metadata": {"name": release}, "spec": {"holderIdentity": "test"}})
        assert status == 201
    finally:
        for d in reversed(created):
            admin.delete(d)


def _leaf_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v and k not in ("parentResources", "childResources", "resources",
                                                   "podSecurityContext", "securityContext",
                                                   "livenessProbe", "readinessProbe"):
            out += _leaf_keys(v, path)
        else:
            out.append(path)
    return out


def test_every_value_is_documented():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    lines = (REPO / "docs" / "configuration.md").read_text().splitlines()

    def documented(key: str) -> bool:
        parent, _, leaf = key.rpartition(".")
        # `a.b.c`, or a row like "`a.b.x` / `.c`" or "`a.x`, `a.b.c`"
        return any(f"`{key}`" in ln or (parent and f"`{parent}." in ln and f"`.{leaf}`" in ln) for ln in lines)

    missing = [k for k in _leaf_keys(values) if not documented(k)]
    assert not missing, f"values not in docs/configuration.md: {missing}"


@pytest.mark.integration
def test_readme_quickstart_manifests_dry_run(control_plane):
    api = Api(control_plane, control_plane.token)
    _install_crds(api)
    docs = [d for d in yaml.safe_load_all((REPO / "docs" / "examples" / "quickstart-cluster.yaml").read_text()) if d]
    for d in docs:
        status, body = api.create(d, dry_run=True)
        assert status in (200, 201), f"{d['kind']} {d['metadata']['name']}: {status} {body}"


@pytest.mark.integration
def test_scheduler_runs_with_chart_rbac(helm, control_plane, tmp_path):
    """The real scheduler, started with the chart Deployment's arguments and a token of the
    chart's ServiceAccount (not admin): it syncs, takes the Lease, groups a bare pod
    (creates a PodGroup, annotates the pod) and binds a gang, with no Forbidden in its log."""
    import signal
    import socket
    import subprocess as sp
    import sys

    from kai.testing.controlplane import fake_node_manifest

    admin = Api(control_plane, control_plane.token)
    _install_crds(admin)
    _ensure_namespace(admin, NS)
    uid = uuid.uuid4().hex[:6]
    sched, release, node, ns = f"kai-rbac-{uid}", f"e2e-{uid}", f"kai-rbac-node-{uid}", f"kai-rbac-{uid}"
    parent, leaf = f"rbac-parent-{uid}", f"rbac-leaf-{uid}"
    docs = render(helm, {"scheduler.schedulerName": sched, "scheduler.replicaCount": 2,
                         "scheduler.schedulePeriod": 0.5}, release=release)
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                             "RoleBinding")]
    res = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
    queues = [{"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": parent},
               "spec": {"resources": {"gpu": res, "cpu": res, "memory": res}}},
              {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": leaf},
               "spec": {"parentQueue": parent, "resources": {"gpu": res, "cpu": res, "memory": res}}}]
    taint = {"key": "kai-rbac-test", "value": uid, "effect": "NoSchedule"}

    def pod(name: str, annotations: dict | None = None) -> dict:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"kai.scheduler/queue": leaf},
                             "annotations": annotations or {}},
                "spec": {"schedulerName": sched, "terminationGracePeriodSeconds": 0,
                         "tolerations": [{"operator": "Exists"}],   # also node.kubernetes.io/not-ready (kwok)
                         "nodeSelector": {"kubernetes.io/hostname": node},
                         "containers": [{"name": "main", "image": "busybox",
                                         "resources": {"requests": {"cpu": "100m", "nvidia.com/gpu": "2"},
                                                       "limits": {"nvidia.com/gpu": "2"}}}]}}

    created: list[dict] = []
    proc = None
    log_path = tmp_path / "scheduler.log"
    try:
        for d in rbac + queues:
            status, body = admin.create(d)
            assert status == 201, f"{d['kind']} {d['metadata']['name']}: {status} {body}"
            created.append(d)
        _ensure_namespace(admin, ns)
        created.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        control_plane.wait_default_service_account(ns)
        control_plane.create_node(fake_node_manifest(node, gpus=8, taints=[taint]))
        created.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        control_plane.wait_nodes_ready([node])

        sa = one(rbac, "ServiceAccount")["metadata"]["name"]
        kubeconfig = control_plane.service_account_kubeconfig(NS, sa, create=False, expiration_seconds=600)
        config = tmp_path / "config.yaml"
        config.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        args = [a.replace("/etc/kai/config.yaml", str(config)) if a.startswith("--config=") else
                (f"--metrics-port={port}" if a.startswith("--metrics-port=") else a)
                for a in container(docs)["args"]]
        assert "--leader-elect" in args
        args.insert(args.index("scheduler") + 1, f"--kubeconfig={kubeconfig}")
        with open(log_path, "wb") as log:
            proc = sp.Popen([sys.executable, "-m", "kai", *args], stdout=log, stderr=sp.STDOUT, cwd=str(REPO),
                            env={**os.environ, "PYTHONPATH": str(REPO)})

        def ready() -> bool:
            assert proc.poll() is None, f"scheduler exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            try:
                import urllib.request
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        _wait(ready, 60, "scheduler /readyz with the chart's ServiceAccount")

        pg = {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
              "metadata": {"name": "gang", "namespace": ns},
              "spec": {"minMember": 2, "queue": leaf, "priorityClassName": "train"}}
        for d in (pg, pod("gang-0", {"pod-group-name": "gang"}), pod("gang-1", {"pod-group-name": "gang"}),
                  pod("bare")):
            status, body = admin.create(d)
            assert status == 201, f"{d['kind']} {d['metadata']['name']}: {status} {body}"

        def bound() -> bool:
            names = []
            for p in ("gang-0", "gang-1", "bare"):
                _, body = admin.request("GET", f"/api/v1/namespaces/{ns}/pods/{p}")
                if body.get("spec", {}).get("nodeName") == node:
                    names.append(p)
            return len(names) == 3
        try:
            _wait(bound, 60, "the gang and the grouped pod bound by the scheduler")
        except AssertionError:
            conds = {p: admin.request("GET", f"/api/v1/namespaces/{ns}/pods/{p}")[1].get("status", {}).get("conditions")
                     for p in ("gang-0", "gang-1", "bare")}
            raise AssertionError(f"not bound: {conds}\nscheduler log:\n" + log_path.read_text()[:3000])
        _, bare = admin.request("GET", f"/api/v1/namespaces/{ns}/pods/bare")
        pg_name = bare["metadata"]["annotations"].get("pod-group-name", "")
        assert pg_name.startswith("pg-bare-"), bare["metadata"]
        assert admin.request("GET", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{ns}/podgroups/{pg_name}")[0] == 200
        _, lease = admin.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{sched}")
        assert lease.get("spec", {}).get("holderIdentity"), lease
        text = log_path.read_text()
        # a 403 status as a word, not three digits inside a pod-group UUID
        assert not re.search(r"(?<![0-9a-f-])403(?![0-9a-f-])", text) and "forbidden" not in text.lower(), text[-4000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except sp.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for d in reversed(created):
            admin.delete(d)
        admin.request("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{sched}")
