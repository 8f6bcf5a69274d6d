"""Fixtures for the end-to-end tests: a cluster with KAI's CRDs, queues, nodes, and a scheduler."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from e2e_helpers import SchedulerProcess, create_default_queues, install_crds
from kai.cache.kubeclient import KubeClient
from kai.testing.controlplane import fake_node_manifest


@pytest.fixture(scope="session")
def kai_client(control_plane) -> KubeClient:
    return KubeClient.from_kubeconfig(os.environ.get("KAI_E2E_KUBECONFIG") or control_plane.kubeconfig)


@pytest.fixture(scope="session")
def kai_cluster(control_plane, kai_client, tmp_path_factory):
    """CRDs, default queues and 2 fake 8-GPU nodes installed; returns the kubeconfig path."""
    install_crds(kai_client)
    create_default_queues(kai_client)
    names = ["e2e-gpu-0", "e2e-gpu-1"]
    for n in names:
        try:
            control_plane.create_node(fake_node_manifest(n, gpus=8, cpu="32", memory="256Gi"))
        except Exception as exc:   # noqa: BLE001 - already there
            if "AlreadyExists" not in str(exc) and "409" not in str(exc):
                raise
    control_plane.wait_nodes_ready(names)
    return chart_service_account_kubeconfig(control_plane)


CHART = Path(__file__).resolve().parents[2] / "charts" / "kai-scheduler"
CHART_NS = "kai-scheduler"
_RBAC_PATHS = {
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}


def _helm() -> str | None:
    for cand in (os.environ.get("KAI_HELM"), str(Path.home() / ".cache" / "kai-tools" / "bin" / "helm")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return shutil.which("helm")


def chart_service_account_kubeconfig(control_plane) -> str:
    """A kubeconfig for the chart's ServiceAccount, with the chart's RBAC created for real.

    The scheduler under test then runs with exactly the permissions `helm install` grants
    (GPU sharing on, for the reservation pods), proving the RBAC sufficient. Without helm
    (a machine that cannot build it) the admin kubeconfig is used, except in CI.
    """
    helm = _helm()
    if helm is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI=true: helm not found (bash hack/tools/build-helm.sh)", pytrace=False)
        return control_plane.kubeconfig
    out = subprocess.run([helm, "template", "kai-scheduler", str(CHART), "--namespace", CHART_NS,
                          "--set", "global.gpuSharing=true"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HELM_CACHE_HOME": "/tmp/kai-helm-cache",
                              "HELM_CONFIG_HOME": "/tmp/kai-helm-config", "HELM_DATA_HOME": "/tmp/kai-helm-data"},
                         check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d.get("kind") in _RBAC_PATHS]
    control_plane.api_request("POST", "/api/v1/namespaces",
                              {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CHART_NS}})
    for kind in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        for d in (d for d in docs if d["kind"] == kind):
            ns = d["metadata"].get("namespace") or CHART_NS
            status, body = control_plane.api_request("POST", _RBAC_PATHS[kind].format(ns=ns), d)
            if status not in (201, 409):
                raise AssertionError(f"creating {kind} {d['metadata']['name']}: {status} {body}")
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    return control_plane.service_account_kubeconfig(CHART_NS, sa, create=False, expiration_seconds=86400)


@pytest.fixture(scope="session")
def kai_scheduler(kai_cluster, tmp_path_factory):
    """One ``kai scheduler`` subprocess for the session (leader-elected, as in production)."""
    logdir = tmp_path_factory.mktemp("kai-scheduler")
    proc = SchedulerProcess(kai_cluster, logdir / "scheduler.log", "--leader-elect",
                            "--namespace", "kai-scheduler")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
