"""Helpers for the end-to-end tests (fixtures in conftest.py): CRDs, queues, and ``kai scheduler`` subprocesses.

Everything goes through a KUBECONFIG (the ``control_plane`` fixture's, so the same tests run
against kind or a real cluster) and plain API requests.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from kai.cache.kubeclient import ApiError, KubeClient

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "charts" / "kai-scheduler" / "crds"
CHART = REPO / "charts" / "kai-scheduler"
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


def chart_rbac_kubeconfig(control_plane, sets: list[str], service_account: str | None = None) -> str:
    """Render the chart with ``--set`` ``sets``, create its Namespaces, ServiceAccounts and RBAC
    for real, and return a kubeconfig of ``service_account`` (default: the scheduler's), so a
    component under test runs with exactly what `helm install` grants. Without helm the admin
    kubeconfig is returned, except in CI."""
    helm = _helm()
    if helm is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI=true: helm not found (bash hack/tools/build-helm.sh)", pytrace=False)
        return control_plane.kubeconfig
    args = [helm, "template", "kai-scheduler", str(CHART), "--namespace", CHART_NS]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120,
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
    sa = service_account or next(d for d in docs if d["kind"] == "ServiceAccount"
                                 and d["metadata"].get("namespace", CHART_NS) == CHART_NS)["metadata"]["name"]
    return control_plane.service_account_kubeconfig(CHART_NS, sa, create=False, expiration_seconds=86400)


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def install_crds(client: KubeClient) -> None:
    for f in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        name = crd["metadata"]["name"]
        try:
            client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except ApiError as exc:
            if exc.status != 409:
                raise
        def established() -> bool:
            c = client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            return any(x["type"] == "Established" and x["status"] == "True"
                       for x in (c.get("status") or {}).get("conditions") or [])
        wait_for(established, 30, what=f"CRD {name} established")


def queue_manifest(name: str, parent: str = "", gpu_quota: float = -1, priority: int | None = None) -> dict:
    res = {"quota": gpu_quota, "overQuotaWeight": 1, "limit": -1}
    spec: dict[str, Any] = {"resources": {"gpu": res, "cpu": {"quota": -1, "overQuotaWeight": 1, "limit": -1},
                                          "memory": {"quota": -1, "overQuotaWeight": 1, "limit": -1}}}
    if parent:
        spec["parentQueue"] = parent
    if priority is not None:
        spec["priority"] = priority
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def ensure(client: KubeClient, path: str, body: dict) -> None:
    try:
        client.post(path, body)
    except ApiError as exc:
        if exc.status != 409:
            raise


def create_default_queues(client: KubeClient) -> None:
    ensure(client, "/apis/scheduling.run.ai/v2/queues", queue_manifest("default-parent-queue"))
    ensure(client, "/apis/scheduling.run.ai/v2/queues", queue_manifest("default-queue", "default-parent-queue"))


def pod_manifest(name: str, gpus: int = 1, scheduler: str = "kai-scheduler", annotations: dict | None = None,
                 labels: dict | None = None, cpu: str = "100m", queue: str = "default-queue") -> dict:
    """A pod as a user writes it for KAI-Scheduler (its quick-start form): ``schedulerName``,
    the queue label ``kai.scheduler/queue``, whole GPUs as an ``nvidia.com/gpu`` limit (the
    API server copies it to requests), GPU sharing as annotations only (``gpu-fraction``,
    ``gpu-memory``), CPU and memory requests. No tolerations, no nodeName, nothing that
    exists only to get past the test cluster: its nodes are Ready and untainted (the node
    lifecycle controller runs) and labelled as GPU feature discovery labels real ones."""
    meta_labels = {"kai.scheduler/queue": queue, **(labels or {})}
    resources: dict[str, dict[str, str]] = {"requests": {"cpu": cpu, "memory": "100Mi"}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": meta_labels, **({"annotations": annotations} if annotations else {})},
            "spec": {"schedulerName": scheduler,
                     "containers": [{"name": "main", "image": "ubuntu", "command": ["sleep", "infinity"],
                                     "resources": resources}]}}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SchedulerProcess:
    """``python -m kai scheduler`` in a subprocess; stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, kubeconfig: str, log_path: Path, *extra: str) -> None:
        self.metrics_port = free_port()
        argv = [sys.executable, "-m", "kai", "-v", "scheduler", "--kubeconfig", kubeconfig,
                "--schedule-period", "0.5", "--metrics-port", str(self.metrics_port), *extra]
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))

    def get(self, path: str) -> tuple[int, str]:
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except OSError as exc:
            code = getattr(exc, "code", 0)
            return code, str(exc)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"scheduler exited {self.proc.returncode}:\n{self.tail()}")
            return self.get("/readyz")[0] == 200
        wait_for(ready, timeout, 0.3, "scheduler /readyz")

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


RESERVATION_PODS = "/api/v1/namespaces/kai-resource-reservation/pods"


def play_gpu_device(c, uuid: str, on_node: Callable[[str], bool], stop) -> threading.Thread:
    """The reservation image's part on a real node, in a daemon thread until ``stop`` is set:
    annotate every reservation pod on a node ``on_node`` accepts with the GPU ``uuid``
    (``run.ai/reserve_for_gpu_index``). A pod gone between the list and the patch is skipped:
    the scheduler deletes a reservation pod whose bind failed, or another test's."""
    def run() -> None:
        done: set[str] = set()
        while not stop.is_set():
            try:
                items = c.get(RESERVATION_PODS)["items"]
            except ApiError:
                items = []
            for p in items:
                name = p["metadata"]["name"]
                if name in done or p["metadata"].get("deletionTimestamp") or not on_node(p["spec"].get("nodeName")):
                    continue
                try:
                    c.patch(f"{RESERVATION_PODS}/{name}",
                            {"metadata": {"annotations": {"run.ai/reserve_for_gpu_index": uuid}}})
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                done.add(name)
            time.sleep(0.1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
