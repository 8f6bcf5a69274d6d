"""Prometheus metrics with KAI's names, plus /healthz, /readyz and /debug/state, on one HTTP port.

Names follow KAI's scheduler (``pkg/scheduler/metrics``), prefixed with the metrics namespace
(default ``kai``): latency gauges in milliseconds, bind latency histogram with KAI's buckets
(5 ms doubling to 2560 ms), action counters and per-queue fair-share/usage gauges.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kai.api import constants as C
from kai.cache.occupancy import pool_occupancy
from kai.api.reasons import cause

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
        # KAI's queue-controller names: what the Prometheus usage source (usageDBConfig) sums
        self.alloc_gpu = Gauge("queue_allocated_gpus", "GPUs allocated to the queue and its children",
                               ["queue_name"], namespace=ns, registry=r)
        self.alloc_cpu = Gauge("queue_allocated_cpu_cores", "CPU cores allocated to the queue and its children",
                               ["queue_name"], namespace=ns, registry=r)
        self.alloc_mem = Gauge("queue_allocated_memory_bytes", "Memory allocated to the queue and its children",
                               ["queue_name"], namespace=ns, registry=r)
        self.usage_query = Histogram("usage_query_latency_milliseconds", "Usage database query latency histogram "
                                     "in milliseconds", namespace=ns, registry=r, buckets=BUCKETS)
        self.preemption_attempts = Counter("total_preemption_attempts", "Total preemption attempts in the cluster",
                                           namespace=ns, registry=r)
        self.unschedulable = Gauge("unschedulable_podgroups", "PodGroups the last cycle left unschedulable, by cause",
                                   ["reason"], namespace=ns, registry=r)
        self.gpu_devices = Gauge("gpu_devices", "GPU devices per node pool: whole, fractional, fragmented, free",
                                 ["nodepool", "state"], namespace=ns, registry=r)
        self._queues: set[str] = set()
        self._causes: set[str] = set()
        self._gpu_series: set[tuple[str, str]] = set()
        self._gpus_at = float("-inf")
        self.is_leader = Gauge("is_leader", "1 when this replica holds the leader Lease", namespace=ns, registry=r)
        self.warm = Gauge("warm_latency_milliseconds", "Time of the last warm-up of the scheduler's kept "
                          "per-job figures and indexes (after the first sync; on a follower)",
                          namespace=ns, registry=r)
        self.fenced_cycles = Counter("fenced_cycles", "Cycles abandoned because the leader Lease was not held "
                                     "with margin", namespace=ns, registry=r)
        self.fenced_writes = Counter("fenced_writes", "API writes refused locally because the leader Lease was "
                                     "not held with margin", namespace=ns, registry=r)
        self.invalid_objects = Gauge("invalid_objects", "Objects kai currently ignores because they are malformed "
                                     "(an Event names each)", ["kind"], namespace=ns, registry=r)
        self.invalid_reports = Counter("invalid_object_reports", "Times an informer delivered a malformed object",
                                       ["kind"], namespace=ns, registry=r)

    def observe_cycle(self, result, state=None) -> None:
        """Update every per-cycle metric from one cycle's :class:`kai.cache.decisions.CycleResult`
        (``duration``, ``open_seconds``/``close_seconds`` and ``action_seconds`` included).

        ``state`` (the ClusterState) maps pod keys to their PodGroups; without it each pod
        counts as its own group and evictions carry no podgroup/uid. A binding or pipelined
        decision without an action is counted under ``allocate``.

        - ``podgroups_scheduled_by_action{action}``: PodGroups that got pods bound or pipelined
          by the action, plus the preemptors its evictions were for (KAI counts a job once per
          successful attempt).
        - ``podgroups_acted_on_by_action{action}``: those plus the PodGroups whose pods the
          action evicted.
        - ``total_preemption_attempts``: preemptor PodGroups of the ``preempt`` action.
        - ``pod_group_evicted_pods_total{podgroup,uid,nodepool,action}``: one per evicted pod.
        """
        self.e2e.set(result.duration * 1000.0)
        self.open_session.set(result.open_seconds * 1000.0)
        self.close_session.set(result.close_seconds * 1000.0)
        for a, seconds in result.action_seconds.items():
            self.action_latency.labels(action=a).set(seconds * 1000.0)
        self._observe_queues(result)
        self._observe_unschedulable(result)
        if state is not None and time.monotonic() - self._gpus_at >= self.GPU_REFRESH_SECONDS:
            self._gpus_at = time.monotonic()
            self._observe_gpus(state)
        wanted = {d.pod for d in (*result.bindings, *result.pipelined, *result.evictions)}
        pods = _pods_by_key(state, wanted)

        def job_of(pod_key: str) -> str:
            p = pods.get(pod_key)
            return (p.job_key if p is not None and p.job_key else "") or pod_key

        scheduled: dict[str, set[str]] = {}
        acted: dict[str, set[str]] = {}
        for d in (*result.bindings, *result.pipelined):
            action = d.action or "allocate"
            job = job_of(d.pod)
            scheduled.setdefault(action, set()).add(job)
            acted.setdefault(action, set()).add(job)
        preemptors: set[str] = set()
        for d in result.evictions:
            action = d.action or "unknown"
            victim = job_of(d.pod)
            acted.setdefault(action, set()).add(victim)
            if d.preemptor:
                scheduled.setdefault(action, set()).add(d.preemptor)
                acted[action].add(d.preemptor)
                if action == "preempt":
                    preemptors.add(d.preemptor)
            name, uid, pool = _podgroup_labels(state, pods.get(d.pod))
            self.evicted.labels(podgroup=name, uid=uid, nodepool=pool, action=action).inc()
        for action, jobs in scheduled.items():
            self.scheduled.labels(action=action).inc(len(jobs))
        for action, jobs in acted.items():
            self.acted_on.labels(action=action).inc(len(jobs))
        if preemptors:
            self.preemption_attempts.inc(len(preemptors))

    def _observe_queues(self, result) -> None:
        seen = set()
        for q in result.queues:
            name = q["name"]
            seen.add(name)
            f, a = q["fairShare"], q["allocated"]
            self.fair_gpu.labels(queue_name=name).set(f["gpu"])
            self.fair_cpu.labels(queue_name=name).set(f["cpu"] / 1000.0)
            self.fair_mem.labels(queue_name=name).set(f["memory"] / 1e9)
            self.use_gpu.labels(queue_name=name).set(a["gpu"])
            self.use_cpu.labels(queue_name=name).set(a["cpu"] / 1000.0)
            self.use_mem.labels(queue_name=name).set(a["memory"] / 1e9)
            self.alloc_gpu.labels(queue_name=name).set(a["gpu"])
            self.alloc_cpu.labels(queue_name=name).set(a["cpu"] / 1000.0)
            self.alloc_mem.labels(queue_name=name).set(a["memory"])
        for gone in self._queues - seen:        # deleted queues stop being reported
            for g in (self.fair_gpu, self.fair_cpu, self.fair_mem, self.use_gpu, self.use_cpu, self.use_mem,
                      self.alloc_gpu, self.alloc_cpu, self.alloc_mem):
                try:
                    g.remove(gone)
                except KeyError:
                    pass
        self._queues = seen


    def _observe_unschedulable(self, result) -> None:
        """``unschedulable_podgroups{reason}``: the cycle's unschedulable PodGroups by cause
        (``kai.api.reasons.cause`` of the first reason)."""
        counts: dict[str, int] = {}
        for reasons in result.unschedulable.values():
            c = cause(reasons[0] if reasons else "")
            counts[c] = counts.get(c, 0) + 1
        for c in self._causes - counts.keys():
            self.unschedulable.remove(c)
        for c, n in counts.items():
            self.unschedulable.labels(reason=c).set(n)
        self._causes = set(counts)

    GPU_REFRESH_SECONDS = 5.0    # gpu_devices is recomputed at most this often (~10 ms on 10,000 nodes)

    def _observe_gpus(self, state) -> None:
        """``gpu_devices{nodepool,state}``, as ``kai.cache.occupancy`` defines the states."""
        seen = set()
        for p in pool_occupancy(state.nodes):
            for st in GPU_STATES:
                self.gpu_devices.labels(nodepool=p["name"], state=st).set(p[st])
                seen.add((p["name"], st))
        for gone in self._gpu_series - seen:
            self.gpu_devices.remove(*gone)
        self._gpu_series = seen


GPU_STATES = ("whole", "fractional", "fragmented", "free")


def _pods_by_key(state, keys: set[str]) -> dict:
    """PodInfo by ``namespace/name`` for the pods in ``keys`` (one pass over the state)."""
    if state is None or not keys:
        return {}
    return {p.key: p for p in list(state.pods.values()) if p.key in keys}


def _podgroup_labels(state, pod) -> tuple[str, str, str]:
    """(podgroup name, podgroup uid, node pool) of an evicted pod, as KAI labels the counter."""
    if state is None or pod is None or not pod.job_key:
        return "", "", "default"
    job = state.jobs.get(pod.job_key)
    pg = state.podgroups.get(pod.job_key) or (getattr(job, "podgroup", None) if job is not None else None)
    name = job.name if job is not None else pod.job_key.split("/", 1)[-1]
    uid = job.uid if job is not None else ""
    pool = ""
    if pg is not None:
        pool = (pg.metadata.labels or {}).get(C.NODE_POOL_LABEL, "")
    return name, uid, pool or "default"


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
