"""The usage DB: where the scheduler's queue usage comes from (KAI's ``usagedb`` package).

* :class:`EmbeddedUsageSource` (``clientType: embedded``, the default): the leader records,
  after every cycle, each queue's allocation and the cluster's capacity into a
  :class:`kai.usage.model.UsageHistory`, kept in a ConfigMap (:mod:`kai.cache.usage_store`) so it
  survives restarts and leader changes. Capacity is the allocatable of the nodes kai knows;
  allocation is what the queue status reports (``allocated``, the queue and its children).
* :class:`kai.cache.usage_prometheus.PrometheusUsageSource` (``clientType: prometheus``).
* :class:`UsageLister` (KAI's UsageLister): fetches from the source every ``fetchInterval`` on
  its own thread, keeps the last answer, and reports it stale after ``stalenessPeriod`` (the
  answer is still used, as in KAI, and the error is logged once per change). ``wait_for_first``
  lets the controller wait up to ``waitTimeout`` for the first answer before scheduling.

The controller (``kai.controller.main``) builds the lister with :func:`build_usage_lister`, puts
``lister.current()`` into ``ClusterState.queue_resource_usage`` before each cycle, and passes
each leader cycle to ``lister.record``. The proportion plugin reads it from there.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Mapping

import numpy as np
import structlog

from kai.api.resources import CPU, GPU, MEMORY
from kai.usage.model import (DEFAULT_MAX_BUCKETS, DEFAULT_MAX_BYTES, UsageDBConfig, UsageHistory, UsageParams,
                           Vector)
from kai.cache.kubeclient import ApiError
from kai.cache.usage_store import ConfigMapHistoryStore

log = structlog.get_logger("kai.usage")

_COLS = np.array([GPU, CPU, MEMORY], dtype=np.intp)


def cluster_capacity(state) -> tuple[float, float, float]:
    """[gpu devices, cpu millicores, memory bytes] allocatable on the nodes in use."""
    nodes = state.nodes
    nodes.ensure_width()
    used = nodes.in_use.astype(bool)
    if not used.any():
        return (0.0, 0.0, 0.0)
    tot = nodes.allocatable[_COLS][:, used].sum(axis=1)
    return (float(tot[0]), float(tot[1]), float(tot[2]))


class EmbeddedUsageSource:
    """kai's own usage history, recorded by the leader and kept in a ConfigMap."""

    def __init__(self, params: UsageParams, store: ConfigMapHistoryStore | None,
                 max_buckets: int = DEFAULT_MAX_BUCKETS, max_bytes: int = DEFAULT_MAX_BYTES,
                 clock=time.time) -> None:
        self.params = params
        self.store = store
        self.max_buckets = max_buckets
        self.max_bytes = max_bytes
        self.clock = clock
        self.history = UsageHistory.for_params(params, clock(), max_buckets, max_bytes)
        self._lock = threading.Lock()
        self._prev: tuple[float, Vector, dict[str, Vector]] | None = None
        self._dirty = False
        self._need_load = store is not None

    def describe(self) -> str:
        if self.store is None:
            return "embedded (in memory)"
        return f"embedded (ConfigMap {self.store.namespace}/{self.store.name})"

    # ------------------------------------------------------------ leader side (controller thread)
    def on_leading(self) -> None:
        """This replica (again) leads: read the stored history before adding to it."""
        with self._lock:
            self._need_load = self.store is not None
            self._prev = None

    def record(self, now: float, capacity: Vector, allocated: Mapping[str, Vector]) -> None:
        """The cluster as it is at ``now``; the values seen at the previous call are taken to
        have held since then. A gap longer than ``stalenessPeriod`` (no leader, a pause) is
        not counted: nothing is known about it."""
        cur = (now, tuple(capacity), dict(allocated))
        with self._lock:
            prev = self._prev
            if prev is None and self.history.last_observed is not None:
                # continuing a stored history: the current values stand for the short gap
                prev = (self.history.last_observed, cur[1], cur[2])
            if prev is not None and 0 < now - prev[0] <= self.params.staleness_period:
                self.history.observe(prev[0], now, prev[1], prev[2])
                self._dirty = True
            self._prev = cur

    # ------------------------------------------------------------ lister thread
    def tick(self, now: float) -> None:
        """Load the stored history when needed; save it when it changed."""
        if self.store is None:
            return
        with self._lock:
            need_load = self._need_load
        if need_load:
            loaded = self.store.load(self.max_buckets, self.max_bytes)
            with self._lock:
                if loaded is not None:
                    self.history = loaded
                    self._prev = None
                self._need_load = False
                self._dirty = False
            log.info("usage history loaded", source=self.describe(), buckets=len(self.history.buckets))
            return
        with self._lock:
            if not self._dirty:
                return
            self.history.prune(self.params, now)
            snapshot = UsageHistory.from_json(self.history.to_json(), self.max_buckets, self.max_bytes)
            self._dirty = False
        if not self.store.save(snapshot):
            log.warning("usage history ConfigMap changed meanwhile (another leader?): reloading it",
                        source=self.describe())
            with self._lock:
                self._need_load = True

    def fetch(self, now: float | None = None) -> dict[str, Vector]:
        now = self.clock() if now is None else now
        with self._lock:
            return self.history.usage(self.params, now)


class UsageLister:
    """KAI's UsageLister: periodic fetch on a thread, last answer kept, staleness reported."""

    def __init__(self, source, params: UsageParams, clock=time.time, on_latency=None) -> None:
        self.source = source
        self.params = params
        self.clock = clock
        self.on_latency = on_latency          # fn(seconds): usage_query_latency_milliseconds
        self._usage: dict[str, Vector] = {}
        self._fetched_at: float | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._stale_logged = False

    def describe(self) -> str:
        return self.source.describe()

    def start(self) -> UsageLister:
        self._thread = threading.Thread(target=self._run, name="usage-db", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.fetch_once()
            self._stop.wait(self.params.fetch_interval)

    def fetch_once(self) -> bool:
        """One tick of the source and one fetch; errors are logged, the last answer kept."""
        t0 = time.perf_counter()
        now = self.clock()
        try:
            tick = getattr(self.source, "tick", None)
            if tick is not None:
                tick(now)
            usage = self.source.fetch(now)
        except (ApiError, OSError, RuntimeError, ValueError) as exc:
            msg = f"{type(exc).__name__}: {exc}"
            if msg != self._last_error:
                log.error("failed to fetch usage data", source=self.describe(), error=msg)
            self._last_error = msg
            return False
        if self.on_latency is not None:
            self.on_latency(time.perf_counter() - t0)
        self._usage, self._fetched_at = usage, now
        self._last_error = ""
        self._first.set()
        return True

    def wait_for_first(self, stop: threading.Event | None = None) -> bool:
        """Wait up to ``waitTimeout`` for the first answer (KAI's WaitForCacheSync)."""
        deadline = time.monotonic() + self.params.wait_timeout
        while not self._first.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                log.warning("usage data not available yet: scheduling without it",
                            source=self.describe(), waited=self.params.wait_timeout)
                return False
            self._first.wait(min(left, 0.05))
        return True

    def current(self) -> tuple[dict[str, Vector], str]:
        """(usage per queue, "" or why it is missing / stale). Stale data is still returned."""
        if self._fetched_at is None:
            return {}, "usage data is not available" + (f" ({self._last_error})" if self._last_error else "")
        age = self.clock() - self._fetched_at
        if age > self.params.staleness_period:
            why = (f"usage data is stale: last update {age:.0f}s ago, staleness period "
                   f"{self.params.staleness_period:.0f}s")
            if not self._stale_logged:
                log.warning("using stale usage data", source=self.describe(), detail=why)
                self._stale_logged = True
            return self._usage, why
        self._stale_logged = False
        return self._usage, ""

    def on_leading(self) -> None:
        hook = getattr(self.source, "on_leading", None)
        if hook is not None:
            hook()

    def record(self, state, result, now: float) -> None:
        """After a leader cycle: what each queue holds now and what the cluster has."""
        rec = getattr(self.source, "record", None)
        if rec is None:
            return
        allocated = {name: v["allocated"] for name, v in (result.queue_usage or {}).items()}
        rec(now, cluster_capacity(state), allocated)


def build_usage_lister(cfg: UsageDBConfig | None, client, namespace: str, scheduler_name: str,
                       environ: Mapping[str, str] | None = None, on_latency=None) -> UsageLister | None:
    """The lister for ``usageDBConfig``, or None when time-based fair share is off."""
    if cfg is None:
        return None
    env = os.environ if environ is None else environ
    if cfg.client_type == "prometheus":
        from kai.cache.usage_prometheus import PrometheusUsageSource
        source = PrometheusUsageSource(cfg.connection(env), cfg.params)
    else:
        target = cfg.connection(env) or f"{scheduler_name}-usage-history"
        ns, _, name = target.rpartition("/")
        store = ConfigMapHistoryStore(client, ns or namespace, name) if client is not None else None
        source = EmbeddedUsageSource(cfg.params, store)
    lister = UsageLister(source, cfg.params, on_latency=on_latency)
    log.info("time-based fair share on", source=lister.describe(), windowType=cfg.params.window_type,
             windowSeconds=cfg.params.window_size, halfLifeSeconds=cfg.params.half_life)
    return lister
