"""KAI's Prometheus usage source (``usageDBConfig.clientType: prometheus``).

Sends the queries KAI's scheduler sends (``pkg/scheduler/cache/usagedb/prometheus``) to
Prometheus's HTTP API (``/api/v1/query``) and normalises each queue's usage by the cluster's
capacity over the same window:

* allocation, per queue (label ``queue_name``): ``kai_queue_allocated_gpus``,
  ``kai_queue_allocated_cpu_cores``, ``kai_queue_allocated_memory_bytes`` -- kai's scheduler
  exports them with KAI's queue-controller names (``kai.controller.metrics``);
* capacity: ``sum(kube_node_status_capacity{resource="nvidia_com_gpu"})`` (and ``cpu``,
  ``memory``), from kube-state-metrics;
* both overridable with ``extraParams`` ``{gpu,cpu,memory}{Allocation,Capacity}Metric``;
  ``queryResolution`` (default 1m) is the subquery step, ``usageQueryTimeout`` (default 10s)
  the request timeout;
* with ``halfLifePeriod`` each is multiplied by ``0.5^((<now> - time()) / <halfLife seconds>)``;
* sliding window: ``sum_over_time((<metric>)[<windowSize>:<resolution>])`` at now.

Tumbling and cron windows: KAI sends ``sum_over_time(<metric>)`` as a range query from the
latest reset, which Prometheus refuses (an instant vector where a range is required), so KAI's
own tumbling windows never return usage. kai asks the sliding form instead with the range
``[<now - latest reset>:<resolution>]``: the usage since the latest reset, which is what the
window means.

A resource the cluster has none of (no capacity series, or 0) gets usage 0 instead of failing
the whole fetch as KAI does (a CPU-only cluster would otherwise have no time-based fair share).
Used by :mod:`kai.cache.usage_db`.
"""
from __future__ import annotations

import json
import math
import time
from urllib.parse import urlencode

import urllib3

from kai.usage.model import UsageParams, Vector, go_duration, window_start

QUEUE_LABEL = "queue_name"
DEFAULT_ALLOCATION = {"gpu": "kai_queue_allocated_gpus", "cpu": "kai_queue_allocated_cpu_cores",
                      "memory": "kai_queue_allocated_memory_bytes"}
DEFAULT_CAPACITY = {"gpu": 'sum(kube_node_status_capacity{resource="nvidia_com_gpu"})',
                    "cpu": 'sum(kube_node_status_capacity{resource="cpu"})',
                    "memory": 'sum(kube_node_status_capacity{resource="memory"})'}
RESOURCES = ("gpu", "cpu", "memory")


class PrometheusError(RuntimeError):
    """A query Prometheus did not answer (the message carries the query)."""


def decay_expression(half_life: float, now: float) -> str:
    """KAI's decay factor: 1 for a sample at ``now``, halving every ``half_life`` seconds back."""
    return f"0.5^(({int(now)} - time()) / {half_life:f})"


class PrometheusUsageSource:
    """Queries one Prometheus server; ``fetch(now)`` -> {queue: (gpu, cpu, memory)}."""

    def __init__(self, address: str, params: UsageParams) -> None:
        if not address.startswith(("http://", "https://")):
            raise ValueError(f"prometheus connection string {address!r}: expected an http:// or https:// URL")
        self.address = address.rstrip("/")
        self.params = params
        self.timeout = params.extra_duration("usageQueryTimeout", 10.0)
        self.resolution = params.resolution
        self.allocation = {r: params.extra_string(f"{r}AllocationMetric", DEFAULT_ALLOCATION[r]) for r in RESOURCES}
        self.capacity = {r: params.extra_string(f"{r}CapacityMetric", DEFAULT_CAPACITY[r]) for r in RESOURCES}
        self.pool = urllib3.PoolManager(num_pools=1, maxsize=2, retries=False)
        self.last_queries: list[str] = []

    def describe(self) -> str:
        return f"prometheus at {self.address}"

    def window_query(self, metric: str, now: float) -> str:
        """The PromQL for one metric over the window in force at ``now``."""
        p = self.params
        expr = metric
        if p.half_life:
            expr = f"(({metric}) * ({decay_expression(p.half_life, now)}))"
        if p.window_type == "sliding":
            span = p.window_size
        else:
            # since the latest reset, in whole seconds (PromQL ranges take no fractions)
            span = max(math.ceil(now - window_start(p, now)), self.resolution)
        return f"sum_over_time(({expr})[{go_duration(span)}:{go_duration(self.resolution)}])"

    def _query(self, promql: str, now: float) -> list[dict]:
        self.last_queries.append(promql)
        url = f"{self.address}/api/v1/query?" + urlencode({"query": promql, "time": f"{now:.3f}"})
        try:
            r = self.pool.request("GET", url, timeout=urllib3.Timeout(total=self.timeout))
        except urllib3.exceptions.HTTPError as exc:
            raise PrometheusError(f"cannot reach {self.address}: {exc}") from exc
        try:
            doc = json.loads(r.data)
        except ValueError:
            raise PrometheusError(f"HTTP {r.status} from {self.address}, not JSON; query: {promql}") from None
        if r.status >= 300 or doc.get("status") != "success":
            raise PrometheusError(f"{doc.get('errorType', r.status)}: {doc.get('error', '')}; query: {promql}")
        data = doc.get("data") or {}
        if data.get("resultType") != "vector":
            raise PrometheusError(f"unexpected result type {data.get('resultType')!r} (expected vector); "
                                  f"query: {promql}")
        return data.get("result") or []

    def fetch(self, now: float | None = None) -> dict[str, Vector]:
        now = time.time() if now is None else now
        self.last_queries = []
        capacity = []
        for r in RESOURCES:
            result = self._query(self.window_query(self.capacity[r], now), now)
            capacity.append(float(result[0]["value"][1]) if result else 0.0)
        usage: dict[str, list[float]] = {}
        for i, r in enumerate(RESOURCES):
            for sample in self._query(self.window_query(self.allocation[r], now), now):
                q = (sample.get("metric") or {}).get(QUEUE_LABEL)
                if not q:
                    continue
                v = float(sample["value"][1])
                row = usage.setdefault(q, [0.0, 0.0, 0.0])
                row[i] = v / capacity[i] if capacity[i] > 0 else 0.0
        return {q: tuple(v) for q, v in usage.items()}

    def close(self) -> None:
        self.pool.clear()
