"""Time-based fair share end to end: a queue that used the cluster in the past gets less of it now.

A control plane of its own (one 8-GPU kwok node, so the history is not diluted by other tests'
nodes), two queues with the same weight and no quota, and a ``kai scheduler`` subprocess with
``usageDBConfig``:

* embedded source: team-a holds all 8 GPUs for a while; the scheduler is then restarted (the
  history must come back from its ConfigMap); both queues then ask for 8 GPUs at once. Without
  history they would get 4 and 4 (KAI's plain over-quota division); with it team-b gets more.
* Prometheus source: the same, with a real Prometheus server (built from Go modules by
  hack/tools/build-prometheus.sh) scraping the scheduler's ``kai_queue_allocated_gpus`` and a
  stand-in for kube-state-metrics' ``kube_node_status_capacity``; the scheduler sends KAI's
  queries to it.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from e2e_helpers import SchedulerProcess, ensure, free_port, install_crds, pod_manifest, queue_manifest, wait_for
from kai.usage.model import parse_usage_params
from kai.cache.kubeclient import KubeClient
from kai.cache.usage_prometheus import PrometheusUsageSource
from kai.config import DEFAULT_PLUGINS
from kai.testing.controlplane import ControlPlane, binaries_available, fake_node_manifest

pytestmark = pytest.mark.integration

SCHED = "kai-tbf"
NS = "tbf"
PROM = Path(os.environ.get("KAI_TOOLS_DIR", Path.home() / ".cache" / "kai-tools")) / "bin" / "prometheus"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture(scope="module")
def cluster():
    ok, reason = binaries_available()
    if not ok:
        if _ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    cp = ControlPlane(with_controller_manager=True, with_kwok=True)
    cp.start()
    try:
        client = KubeClient.from_kubeconfig(cp.kubeconfig)
        install_crds(client)
        cp.create_node(fake_node_manifest("tbf-gpu-0", gpus=8, cpu="32", memory="256Gi"))
        cp.wait_nodes_ready(["tbf-gpu-0"])
        for ns in (NS, "kai-scheduler"):
            ensure(client, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        cp.wait_default_service_account(NS)
        for q in ("team-a", "team-b"):
            ensure(client, "/apis/scheduling.run.ai/v2/queues", queue_manifest(q, gpu_quota=0))
        yield cp, client
    finally:
        cp.stop()


def write_config(tmp_path: Path, usage_db: dict, k_value: float = 1.0) -> Path:
    plugins = [{"name": p, **({"arguments": {"kValue": str(k_value)}} if p == "proportion" else {})}
               for p in DEFAULT_PLUGINS]
    path = tmp_path / "scheduler.yaml"
    path.write_text(yaml.safe_dump({"tiers": [{"plugins": plugins}], "usageDBConfig": usage_db}))
    return path


def submit(client: KubeClient, queue: str, n: int, tag: str) -> None:
    for i in range(n):
        client.post(f"/api/v1/namespaces/{NS}/pods", pod_manifest(f"{queue}-{tag}-{i}", gpus=1, scheduler=SCHED,
                                                                  queue=queue))


def bound(client: KubeClient) -> dict[str, int]:
    out = {"team-a": 0, "team-b": 0}
    for p in client.get(f"/api/v1/namespaces/{NS}/pods")["items"]:
        if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp"):
            q = p["metadata"]["labels"]["kai.scheduler/queue"]
            out[q] += 1
    return out


def clear(client: KubeClient) -> None:
    client.request("DELETE", f"/api/v1/namespaces/{NS}/pods", params={"gracePeriodSeconds": 0})
    client.request("DELETE", f"/apis/scheduling.run.ai/v2alpha2/namespaces/{NS}/podgroups")
    wait_for(lambda: not client.get(f"/api/v1/namespaces/{NS}/pods")["items"], 60, what="pods gone")


def use_then_compete(client: KubeClient, sched: SchedulerProcess, hold: float, restart=None) -> dict[str, int]:
    """team-a holds the 8 GPUs for ``hold`` seconds; then (after ``restart``) both ask for 8."""
    submit(client, "team-a", 8, "past")
    wait_for(lambda: bound(client)["team-a"] == 8, 60, what=f"team-a's 8 pods bound\n{sched.tail()}")
    time.sleep(hold)
    clear(client)
    if restart is not None:
        sched = restart()
    submit(client, "team-a", 8, "now")
    submit(client, "team-b", 8, "now")
    wait_for(lambda: sum(bound(client).values()) == 8, 60, what=f"8 pods bound\n{sched.tail()}")
    time.sleep(3)                     # a few more cycles: reclaim would move pods if shares disagreed
    got = bound(client)
    clear(client)
    return got


def test_embedded_history_survives_a_restart_and_lowers_the_heavy_users_share(cluster, tmp_path):
    cp, client = cluster
    conf = write_config(tmp_path, {"usageParams": {"windowSize": "10m", "fetchInterval": "1s",
                                                    "stalenessPeriod": "30s", "extraParams": {"queryResolution": "1s"}}})
    args = ("--config", str(conf), "--scheduler-name", SCHED, "--leader-elect", "--namespace", "kai-scheduler")
    procs = [SchedulerProcess(cp.kubeconfig, tmp_path / "s1.log", *args)]
    try:
        procs[0].wait_ready()

        def restart() -> SchedulerProcess:
            procs[0].stop()
            cm = client.get(f"/api/v1/namespaces/kai-scheduler/configmaps/{SCHED}-usage-history")
            stored = json.loads(cm["data"]["history.json"])
            assert "team-a" in stored["queues"], stored
            procs.append(SchedulerProcess(cp.kubeconfig, tmp_path / "s2.log", *args))
            procs[-1].wait_ready()
            wait_for(lambda: "usage history loaded" in procs[-1].log_path.read_text(), 30,
                     what="the new scheduler read the history")
            return procs[-1]

        got = use_then_compete(client, procs[0], hold=20, restart=restart)
    finally:
        for p in procs:
            p.stop()
    # plain fair share would split 4 / 4; team-a's past use of the whole cluster lowers its share
    assert got["team-b"] > got["team-a"] and got["team-a"] <= 3, got


class _KubeStateMetricsStandIn(BaseHTTPRequestHandler):
    """kube-state-metrics' capacity series for the one node (kube_node_status_capacity)."""

    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802
        body = ('kube_node_status_capacity{node="tbf-gpu-0",resource="nvidia_com_gpu",unit="integer"} 8\n'
                'kube_node_status_capacity{node="tbf-gpu-0",resource="cpu",unit="core"} 32\n'
                'kube_node_status_capacity{node="tbf-gpu-0",resource="memory",unit="byte"} 274877906944\n').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_prometheus_source_lowers_the_heavy_users_share(cluster, tmp_path):
    if not os.access(PROM, os.X_OK):
        if _ci():
            pytest.fail(f"CI=true: no Prometheus at {PROM} (bash hack/tools/build-prometheus.sh)", pytrace=False)
        pytest.skip(f"no Prometheus at {PROM} (bash hack/tools/build-prometheus.sh builds it)")
    cp, client = cluster
    ksm = ThreadingHTTPServer(("127.0.0.1", 0), _KubeStateMetricsStandIn)
    threading.Thread(target=ksm.serve_forever, daemon=True).start()
    prom_port = free_port()
    conf = write_config(tmp_path, {"clientType": "prometheus", "connectionString": f"http://127.0.0.1:{prom_port}",
                                   "usageParams": {"windowSize": "10m", "fetchInterval": "1s", "stalenessPeriod": "30s",
                                                   "extraParams": {"queryResolution": "1s"}}})
    sched = SchedulerProcess(cp.kubeconfig, tmp_path / "s.log", "--config", str(conf), "--scheduler-name", SCHED,
                             "--leader-elect", "--namespace", "kai-scheduler")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "kai-scheduler", "static_configs": [{"targets": [f"127.0.0.1:{sched.metrics_port}"]}]},
            {"job_name": "kube-state-metrics", "static_configs": [{"targets": [f"127.0.0.1:{ksm.server_address[1]}"]}]},
        ]}))
    prom_log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen([str(PROM), f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=prom_log, stderr=subprocess.STDOUT)
    try:
        sched.wait_ready()

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", prom_port), timeout=1):
                    return True
            except OSError:
                return False
        wait_for(up, 60, what="prometheus listening")
        got = use_then_compete(client, sched, hold=20)
        # the scheduler's fetches succeeded (the latency histogram counts successful ones)
        metrics = sched.get("/metrics")[1]
        fetched = [float(ln.split()[-1]) for ln in metrics.splitlines()
                   if ln.startswith("kai_usage_query_latency_milliseconds_count")]
        assert fetched and fetched[0] > 0, metrics[-2000:]
        # KAI's queries, as kai sends them, for each window type, answered by the real server
        url = f"http://127.0.0.1:{prom_port}"
        for extra in ({}, {"halfLifePeriod": "30s"}, {"windowType": "cron", "cronString": "@hourly"},
                      {"windowType": "tumbling", "tumblingWindowStartTime": "2025-01-01T00:00:00Z", "windowSize": "1h"}):
            params = parse_usage_params({"windowSize": "10m", "extraParams": {"queryResolution": "1s"}, **extra})
            usage = PrometheusUsageSource(url, params).fetch()
            assert 0 < usage["team-a"][0] <= 1, (extra, usage)
            assert usage.get("team-b", (0, 0, 0))[0] < usage["team-a"][0], (extra, usage)
        # KAI's own tumbling-window query (sum_over_time of an instant vector) is refused by Prometheus
        import urllib.request
        from urllib.parse import urlencode
        try:
            urllib.request.urlopen(f"{url}/api/v1/query_range?" + urlencode(
                {"query": "sum_over_time(kai_queue_allocated_gpus)", "start": time.time() - 60, "end": time.time(),
                 "step": "1s"}), timeout=5)
            refused = False
        except urllib.error.HTTPError as exc:
            refused = exc.code == 400 and b"range vector" in exc.read()
        assert refused
    finally:
        sched.stop()
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
        prom_log.close()
        ksm.shutdown()
    assert got["team-b"] > got["team-a"] and got["team-a"] <= 3, got
