"""Prometheus metrics with KAI's names, plus /healthz, /readyz and /debug/state, on one HTTP port.

Names follow KAI's scheduler (``pkg/scheduler/metrics``), prefixed with the metrics namespace
(default ``kai``): latency gauges in milliseconds, bind latency histogram with KAI's buckets
(5 ms doubling to 2560 ms), action counters and per-queue fair-share/usage gauges.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = tuple(5 * 2 ** i for i in range(10))     # 5 ms .. 2560 ms


class Metrics:
    def __init__(self, namespace: str = "kai") -> None:
        self.registry = r = CollectorRegistry()
        ns = namespace
        self.e2e = Gauge("e2e_scheduling_latency_milliseconds", "E2e scheduling latency in milliseconds",
                         namespace=ns, registry=r)
        self.open_session = Gauge("open_session_latency_milliseconds", "Open session latency in milliseconds",
                                  namespace=ns, registry=r)
        self.close_session = Gauge("close_session_latency_milliseconds", "Close session latency in milliseconds",
                                   namespace=ns, registry=r)
        self.action_latency = Gauge("action_scheduling_latency_milliseconds", "Action scheduling latency",
                                    ["action"], namespace=ns, registry=r)
        self.task_bind = Histogram("task_bind_latency_milliseconds", "Task bind latency histogram in milliseconds",
                                   namespace=ns, registry=r, buckets=BUCKETS)
        self.scheduled = Counter("podgroups_scheduled_by_action", "Pod groups scheduled, by action",
                                 ["action"], namespace=ns, registry=r)
        self.acted_on = Counter("podgroups_acted_on_by_action", "Pod groups acted on, by action",
                                ["action"], namespace=ns, registry=r)
        self.evicted = Counter("pod_group_evicted_pods_total", "Evicted pods, by pod group and action",
                               ["podgroup", "uid", "nodepool", "action"], namespace=ns, registry=r)
        self.fair_gpu = Gauge("queue_fair_share_gpu", "Queue fair share of GPUs", ["queue_name"],
                              namespace=ns, registry=r)
        self.fair_cpu = Gauge("queue_fair_share_cpu_cores", "Queue fair share of CPU cores", ["queue_name"],
                              namespace=ns, registry=r)
        self.fair_mem = Gauge("queue_fair_share_memory_gb", "Queue fair share of memory (GB)", ["queue_name"],
                              namespace=ns, registry=r)
        self.use_gpu = Gauge("queue_gpu_usage", "Queue GPU usage", ["queue_name"], namespace=ns, registry=r)
        self.use_cpu = Gauge("queue_cpu_usage", "Queue CPU usage (cores)", ["queue_name"], namespace=ns, registry=r)
        self.use_mem = Gauge("queue_memory_usage", "Queue memory usage (GB)", ["queue_name"],
                             namespace=ns, registry=r)
        self.is_leader = Gauge("is_leader", "1 when this replica holds the leader Lease", namespace=ns, registry=r)

    def observe_cycle(self, result, action_ms: dict[str, float] | None = None) -> None:
        self.e2e.set(result.duration * 1000.0)
        for a, ms in (action_ms or {}).items():
            self.action_latency.labels(action=a).set(ms)
        for q in result.queues:
            name = q["name"]
            f, a = q["fairShare"], q["allocated"]
            self.fair_gpu.labels(queue_name=name).set(f["gpu"])
            self.fair_cpu.labels(queue_name=name).set(f["cpu"] / 1000.0)
            self.fair_mem.labels(queue_name=name).set(f["memory"] / 1e9)
            self.use_gpu.labels(queue_name=name).set(a["gpu"])
            self.use_cpu.labels(queue_name=name).set(a["cpu"] / 1000.0)
            self.use_mem.labels(queue_name=name).set(a["memory"] / 1e9)
        for d in result.evictions:
            self.evicted.labels(podgroup="", uid="", nodepool="default", action=d.action).inc()


class HealthServer:
    """/metrics, /healthz (process alive), /readyz (informers synced) and /debug/state (the
    cache's view: pods -> nodes, for comparing with a fresh list) on ``port``."""

    def __init__(self, metrics: Metrics, port: int, ready: Callable[[], bool], host: str = "0.0.0.0",
                 debug: Callable[[], dict] | None = None) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif path in ("/healthz", "/livez"):
                    body, ctype, code = b"ok", "text/plain", 200
                elif path == "/debug/state" and debug is not None:
                    body, ctype, code = json.dumps(debug(), sort_keys=True).encode(), "application/json", 200
                elif path == "/readyz":
                    ok = ready()
                    body, ctype, code = (b"ok" if ok else b"informers not synced"), "text/plain", (200 if ok else 503)
                else:
                    body, ctype, code = b"not found", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
