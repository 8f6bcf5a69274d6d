"""Time-based fair share: KAI's usage DB configuration and arithmetic (pure, no I/O).

KAI (``pkg/scheduler/cache/usagedb``, ``docs/time-based-fairshare``) gives each queue a
*historical usage* per resource, a number between 0 and 1: what the queue was allocated over a
time window, each moment weighted by an exponential decay, divided by what the cluster had to
give over the same window with the same weights::

    usage[q, r] = sum_t  alloc[q, r](t) * 0.5 ** ((now - t) / halfLife)
                  ---------------------------------------------------------
                  sum_t  capacity[r](t) * 0.5 ** ((now - t) / halfLife)

(without ``halfLifePeriod`` every weight is 1). The window is ``(now - windowSize, now]`` for
``windowType: sliding``; for ``tumbling`` it starts at the latest reset, the reset times being
``tumblingWindowStartTime + k * windowSize``; for ``cron`` at the latest occurrence of
``cronString`` (:mod:`kai.usage.cron`). The proportion plugin then divides over-quota resources
with the share weight ``max(0, w + kValue * (w - usage))``, ``w`` the queue's over-quota weight
normalised among its unsatisfied siblings (``kai._fast.proportion``).

This module owns:

* :class:`UsageParams` / :class:`UsageDBConfig` -- ``usageDBConfig`` as KAI reads it, with
  KAI's defaults (1 week sliding window, no decay, fetch every 1m, stale after 5m, wait 1m),
  and :func:`parse_usage_db_config` with errors naming the field;
* :func:`window_start` -- the start of the window in force at ``now``;
* :class:`UsageHistory` -- allocation and capacity integrated over time in fixed buckets
  (value x seconds), bounded in count and in serialized size, and :meth:`UsageHistory.usage`,
  the formula above over the buckets.

Callers: ``kai.config`` (parsing), ``kai.cache.usage_db`` (the sources and the lister),
``kai.sim`` (``kai simulate --usage-history``).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from kai.usage.cron import CronError, CronExpr, parse_cron

#: resource columns, in the proportion plugin's order; KAI's names for them
RESOURCES = ("gpu", "cpu", "memory")
KAI_RESOURCE_NAMES = ("nvidia.com/gpu", "cpu", "memory")
WINDOW_TYPES = ("sliding", "tumbling", "cron")
#: client types: kai's embedded store (the default) and KAI's Prometheus source
CLIENT_TYPES = ("embedded", "prometheus")
KAI_TEST_CLIENTS = ("fake", "fake-with-history")

DEFAULT_WINDOW = 7 * 24 * 3600.0
DEFAULT_FETCH_INTERVAL = 60.0
DEFAULT_STALENESS = 300.0
DEFAULT_WAIT_TIMEOUT = 60.0
DEFAULT_RESOLUTION = 60.0          # KAI's extraParams.queryResolution default
DEFAULT_MAX_BUCKETS = 2016         # a week at 5-minute buckets
DEFAULT_MAX_BYTES = 900 * 1024     # under the 1 MiB a ConfigMap may hold

Vector = tuple[float, float, float]


class UsageConfigError(ValueError):
    """A usageDBConfig that cannot be used; the message names the field."""


# ---------------------------------------------------------------------------- durations
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
             "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w|y)")


def parse_duration(value: Any, where: str) -> float:
    """Seconds of a duration: Go's form (``90s``, ``1h30m``, ``168h``, ``1.5h``) as KAI's
    metav1.Duration fields read it, plus Prometheus's ``d``/``w``/``y`` units (KAI's own docs
    write ``windowSize: 1w``). A bare number is refused (Go refuses it too, except 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    if not isinstance(value, str) or not value.strip():
        raise UsageConfigError(f"{where}: expected a duration such as 10m, 1h or 168h, got {value!r}")
    s = value.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    body = s.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(body) or pos == 0:
        raise UsageConfigError(f"{where}: {value!r} is not a duration (use units ms, s, m, h, d, w, "
                               f"e.g. 10m, 1h30m, 168h)")
    return sign * total


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` of a whole number of milliseconds (``1m0s``,
    ``168h0m0s``, ``500ms``): the form KAI writes into its PromQL ranges."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    if abs(ms) < 1000:
        return f"{ms}ms"
    neg, ms = ms < 0, abs(ms)
    h, rem = divmod(ms, 3600_000)
    m, rem = divmod(rem, 60_000)
    sec = rem / 1000
    sec_s = f"{sec:.3f}".rstrip("0").rstrip(".") + "s"
    out = (f"{h}h{m}m" if h else (f"{m}m" if m else "")) + sec_s
    return ("-" if neg else "") + out


def _parse_time(value: Any, where: str) -> float:
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageConfigError(f"{where}: {value!r} is not an RFC 3339 time "
                                   f"(e.g. 2025-01-06T00:00:00Z)") from None
    else:
        raise UsageConfigError(f"{where}: expected an RFC 3339 time, got {value!r}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class UsageParams:
    """``usageDBConfig.usageParams`` with KAI's defaults applied (seconds, epoch seconds)."""
    half_life: float | None = None          # None: no decay (KAI: unset, 0 or negative)
    window_size: float = DEFAULT_WINDOW
    window_type: str = "sliding"
    tumbling_start: float | None = None     # tumblingWindowStartTime
    cron_string: str = ""
    fetch_interval: float = DEFAULT_FETCH_INTERVAL
    staleness_period: float = DEFAULT_STALENESS
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    extra: Mapping[str, str] = field(default_factory=dict)
    cron: CronExpr | None = field(default=None, compare=False)

    def extra_duration(self, key: str, default: float) -> float:
        """An ``extraParams`` duration; KAI falls back to the default when it does not parse."""
        v = self.extra.get(key)
        if v is None:
            return default
        try:
            return parse_duration(v, key)
        except UsageConfigError:
            return default

    def extra_string(self, key: str, default: str) -> str:
        return self.extra.get(key, default)

    @property
    def resolution(self) -> float:
        """``extraParams.queryResolution`` (default 1m): the Prometheus subquery step, and the
        finest bucket of the embedded history."""
        r = self.extra_duration("queryResolution", DEFAULT_RESOLUTION)
        return r if r > 0 else DEFAULT_RESOLUTION


@dataclass(frozen=True)
class UsageDBConfig:
    client_type: str = "embedded"
    connection_string: str = ""
    connection_string_env_var: str = ""
    params: UsageParams = field(default_factory=UsageParams)

    def connection(self, environ: Mapping[str, str]) -> str:
        """KAI's resolveConnectionString: one of connectionString / connectionStringEnvVar."""
        if self.connection_string_env_var:
            return environ.get(self.connection_string_env_var, "")
        return self.connection_string


_PARAM_KEYS = {"halfLifePeriod", "windowSize", "windowType", "tumblingWindowStartTime", "cronString",
               "fetchInterval", "stalenessPeriod", "waitTimeout", "extraParams"}
_CONFIG_KEYS = {"clientType", "connectionString", "connectionStringEnvVar", "usageParams"}


def parse_usage_params(doc: Any, where: str = "usageDBConfig.usageParams") -> UsageParams:
    """``usageParams`` -> UsageParams with KAI's defaults; UsageConfigError names the field."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UsageConfigError(f"{where}: must be a mapping")
    for k in doc:
        if k not in _PARAM_KEYS:
            raise UsageConfigError(f"{where}: unknown field {k!r} (expected one of {sorted(_PARAM_KEYS)})")

    def dur(key: str, default: float | None) -> float | None:
        v = doc.get(key)
        return default if v is None else parse_duration(v, f"{where}.{key}")

    half = dur("halfLifePeriod", None)
    if half is not None and half <= 0:          # KAI: 0 or negative disables the decay
        half = None
    window = dur("windowSize", DEFAULT_WINDOW)
    if window <= 0:
        raise UsageConfigError(f"{where}.windowSize: must be positive, got {doc.get('windowSize')!r}")
    wtype = doc.get("windowType") or "sliding"
    if wtype not in WINDOW_TYPES:
        raise UsageConfigError(f"{where}.windowType: {wtype!r} is not one of {', '.join(WINDOW_TYPES)}")
    start = None
    if doc.get("tumblingWindowStartTime") is not None:
        start = _parse_time(doc["tumblingWindowStartTime"], f"{where}.tumblingWindowStartTime")
    if wtype == "tumbling" and start is None:
        raise UsageConfigError(f"{where}: windowType tumbling needs tumblingWindowStartTime "
                               f"(the first reset; later ones follow every windowSize)")
    cron_string = doc.get("cronString") or ""
    if not isinstance(cron_string, str):
        raise UsageConfigError(f"{where}.cronString: must be a string")
    cron = None
    if wtype == "cron":
        try:
            cron = parse_cron(cron_string)
        except CronError as exc:
            raise UsageConfigError(f"{where}.cronString: {exc}") from None
    fetch = dur("fetchInterval", DEFAULT_FETCH_INTERVAL)
    if fetch <= 0:
        raise UsageConfigError(f"{where}.fetchInterval: must be positive")
    stale = dur("stalenessPeriod", DEFAULT_STALENESS)
    stale = max(stale, fetch)                    # KAI: never shorter than the fetch interval
    wait = dur("waitTimeout", DEFAULT_WAIT_TIMEOUT)
    if wait < 0:
        raise UsageConfigError(f"{where}.waitTimeout: must not be negative")
    extra = doc.get("extraParams") or {}
    if not isinstance(extra, dict):
        raise UsageConfigError(f"{where}.extraParams: must be a mapping of strings")
    return UsageParams(half_life=half, window_size=window, window_type=wtype, tumbling_start=start,
                       cron_string=cron_string, fetch_interval=fetch, staleness_period=stale,
                       wait_timeout=wait, extra={str(k): str(v) for k, v in extra.items()}, cron=cron)


def parse_usage_db_config(doc: Any, where: str = "usageDBConfig") -> UsageDBConfig | None:
    """``usageDBConfig`` -> UsageDBConfig, or None when absent. ``clientType`` defaults to
    ``embedded`` (KAI requires it; kai's embedded store needs no connection)."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise UsageConfigError(f"{where}: must be a mapping")
    for k in doc:
        if k not in _CONFIG_KEYS:
            raise UsageConfigError(f"{where}: unknown field {k!r} (expected one of {sorted(_CONFIG_KEYS)})")
    ctype = doc.get("clientType") or "embedded"
    if ctype in KAI_TEST_CLIENTS:
        raise UsageConfigError(f"{where}.clientType: {ctype!r} is a test double in KAI; use embedded "
                               f"(kai's own history) or prometheus")
    if ctype not in CLIENT_TYPES:
        raise UsageConfigError(f"{where}.clientType: unknown client type {ctype!r} "
                               f"(supported: {', '.join(CLIENT_TYPES)})")
    conn = doc.get("connectionString") or ""
    env = doc.get("connectionStringEnvVar") or ""
    if not isinstance(conn, str) or not isinstance(env, str):
        raise UsageConfigError(f"{where}: connectionString and connectionStringEnvVar must be strings")
    if conn and env:
        raise UsageConfigError(f"{where}: both connectionString and connectionStringEnvVar are set, "
                               f"only one is allowed")
    if ctype == "prometheus" and not conn and not env:
        raise UsageConfigError(f"{where}: clientType prometheus needs connectionString (the Prometheus "
                               f"URL, e.g. http://prometheus-operated.kai-scheduler:9090) or "
                               f"connectionStringEnvVar")
    return UsageDBConfig(client_type=ctype, connection_string=conn, connection_string_env_var=env,
                         params=parse_usage_params(doc.get("usageParams"), f"{where}.usageParams"))


# ---------------------------------------------------------------------------- windows
def window_start(params: UsageParams, now: float) -> float:
    """Epoch seconds at which the usage window in force at ``now`` begins."""
    if params.window_type == "sliding":
        return now - params.window_size
    if params.window_type == "tumbling":
        start = params.tumbling_start if params.tumbling_start is not None else now
        if start >= now:          # KAI: a start in the future (or now) is an empty window
            return min(start, now)
        # latest reset strictly before now (KAI: exactly on a boundary, the window just ended
        # is the one before)
        k = math.ceil((now - start) / params.window_size) - 1
        return start + max(k, 0) * params.window_size
    cron = params.cron or parse_cron(params.cron_string)
    prev = cron.previous(datetime.fromtimestamp(now, tz=timezone.utc))
    return prev.timestamp() if prev is not None else now


def retention(params: UsageParams, now: float) -> float:
    """Seconds of history the window can reach back at ``now`` or later."""
    if params.window_type != "cron":
        return params.window_size
    cron = params.cron or parse_cron(params.cron_string)
    here = datetime.fromtimestamp(now, tz=timezone.utc)
    prev, nxt = cron.previous(here), cron.next(here)
    if prev is None or nxt is None:
        return params.window_size
    after = cron.next(nxt)
    span = (nxt - prev).total_seconds()
    if after is not None:
        span = max(span, (after - nxt).total_seconds())
    return span


def decay_factor(half_life: float | None, now: float, a: float, b: float) -> float:
    """Mean decay weight over [a, b] (exact for a value constant there); 1 without decay."""
    if not half_life:
        return 1.0
    if b <= a:
        return 0.5 ** ((now - b) / half_life)
    k = math.log(2.0) / half_life
    return (math.exp(-k * (now - b)) - math.exp(-k * (now - a))) / (k * (b - a))


# ---------------------------------------------------------------------------- history
@dataclass
class Bucket:
    start: float                                    # epoch seconds, a multiple of the width
    capacity: list[float]                           # capacity x seconds, per resource
    queues: dict[str, list[float]]                  # queue -> allocation x seconds, per resource
    lo: float = math.inf                            # first and last observed moment in the bucket
    hi: float = -math.inf


class UsageHistory:
    """Queue allocation and cluster capacity over time, integrated in fixed-width buckets.

    ``observe(t0, t1, capacity, allocated)`` adds a piece during which the values were constant;
    :meth:`usage` applies KAI's window, decay and normalisation. Buckets are aligned to
    multiples of ``width`` (like Prometheus subquery steps). The history stays bounded:
    ``prune`` drops buckets the window can no longer reach, and when more than ``max_buckets``
    remain, or the JSON form would pass ``max_bytes``, neighbouring buckets are merged (the
    width doubles)."""

    VERSION = 1

    def __init__(self, width: float = DEFAULT_RESOLUTION, max_buckets: int = DEFAULT_MAX_BUCKETS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if width <= 0:
            raise ValueError("bucket width must be positive")
        self.width = float(width)
        self.max_buckets = max(2, int(max_buckets))
        self.max_bytes = int(max_bytes)
        self.buckets: dict[int, Bucket] = {}        # index (start / width) -> bucket
        self.last_observed: float | None = None     # end of the last observed piece

    @classmethod
    def for_params(cls, params: UsageParams, now: float, max_buckets: int = DEFAULT_MAX_BUCKETS,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> UsageHistory:
        """A history whose buckets are the query resolution, or coarser when the window would
        need more than ``max_buckets`` of them (a week at 1m -> 5m buckets)."""
        res = params.resolution
        need = retention(params, now) / max_buckets
        width = res * max(1, math.ceil(need / res))
        return cls(width, max_buckets, max_bytes)

    # -------------------------------------------------------------- writing
    def observe(self, t0: float, t1: float, capacity: Iterable[float],
                allocated: Mapping[str, Iterable[float]]) -> None:
        """The values held from ``t0`` to ``t1``: capacity [gpu, cpu, memory], and per queue its
        allocation (same units)."""
        if t1 <= t0:
            return
        cap = [float(x) for x in capacity]
        alloc = {q: [float(x) for x in v] for q, v in allocated.items() if any(v)}
        w = self.width
        a = t0
        while a < t1:
            idx = math.floor(a / w)
            b = min(t1, (idx + 1) * w)
            dt = b - a
            bk = self.buckets.get(idx)
            if bk is None:
                bk = self.buckets[idx] = Bucket(idx * w, [0.0, 0.0, 0.0], {})
            bk.lo, bk.hi = min(bk.lo, a), max(bk.hi, b)
            for r in range(3):
                bk.capacity[r] += cap[r] * dt
            for q, v in alloc.items():
                acc = bk.queues.get(q)
                if acc is None:
                    acc = bk.queues[q] = [0.0, 0.0, 0.0]
                for r in range(3):
                    acc[r] += v[r] * dt
            a = b
        self.last_observed = t1 if self.last_observed is None else max(self.last_observed, t1)

    def prune(self, params: UsageParams, now: float) -> None:
        """Drop what the window cannot reach any more, then keep within the bounds."""
        horizon = min(window_start(params, now), now - retention(params, now))
        for idx in [i for i, b in self.buckets.items() if b.start + self.width <= horizon]:
            del self.buckets[idx]
        while len(self.buckets) > self.max_buckets:
            self.coarsen()
        while len(self.buckets) > 1 and len(self.to_json()) > self.max_bytes:
            self.coarsen()

    def coarsen(self) -> None:
        """Merge bucket pairs: the width doubles, the integrals are kept."""
        self.width *= 2
        merged: dict[int, Bucket] = {}
        for b in sorted(self.buckets.values(), key=lambda b: b.start):
            idx = math.floor(b.start / self.width)
            m = merged.get(idx)
            if m is None:
                merged[idx] = Bucket(idx * self.width, list(b.capacity), {q: list(v) for q, v in b.queues.items()},
                                     b.lo, b.hi)
                continue
            m.lo, m.hi = min(m.lo, b.lo), max(m.hi, b.hi)
            for r in range(3):
                m.capacity[r] += b.capacity[r]
            for q, v in b.queues.items():
                acc = m.queues.setdefault(q, [0.0, 0.0, 0.0])
                for r in range(3):
                    acc[r] += v[r]
        self.buckets = merged

    # -------------------------------------------------------------- reading
    def usage(self, params: UsageParams, now: float) -> dict[str, Vector]:
        """KAI's normalised historical usage per queue, [gpu, cpu, memory] in [0, 1] when the
        queue never had more than the cluster. A resource the cluster never had counts 0."""
        start = window_start(params, now)
        den = [0.0, 0.0, 0.0]
        num: dict[str, list[float]] = {}
        w = self.width
        for b in self.buckets.values():
            a, e = max(b.lo, start), min(b.hi, now)
            if e <= a:
                continue
            # the part of the observed span inside the window (values taken as even within it)
            frac = (e - a) / (b.hi - b.lo)
            f = frac * decay_factor(params.half_life, now, a, e)
            for r in range(3):
                den[r] += b.capacity[r] * f
            for q, v in b.queues.items():
                acc = num.get(q)
                if acc is None:
                    acc = num[q] = [0.0, 0.0, 0.0]
                for r in range(3):
                    acc[r] += v[r] * f
        return {q: tuple(v[r] / den[r] if den[r] > 0 else 0.0 for r in range(3)) for q, v in num.items()}

    # -------------------------------------------------------------- persistence
    def to_json(self) -> str:
        """Compact JSON: queue names once, buckets as [start, first observed, last observed,
        [capacity x s], {queue index: [allocation x s]}]."""
        names = sorted({q for b in self.buckets.values() for q in b.queues})
        index = {q: i for i, q in enumerate(names)}

        def r(x: float) -> float:
            return float(f"{x:.6g}")

        rows = [[b.start, b.lo, b.hi, [r(x) for x in b.capacity],
                 {str(index[q]): [r(x) for x in v] for q, v in sorted(b.queues.items())}]
                for b in sorted(self.buckets.values(), key=lambda b: b.start)]
        return json.dumps({"version": self.VERSION, "bucketSeconds": self.width, "lastObserved": self.last_observed,
                           "queues": names, "buckets": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, max_buckets: int = DEFAULT_MAX_BUCKETS,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> UsageHistory:
        """Read :meth:`to_json`'s form; ValueError says what is wrong."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != cls.VERSION:
            raise ValueError(f"expected a usage history of version {cls.VERSION}")
        try:
            h = cls(float(doc["bucketSeconds"]), max_buckets, max_bytes)
            names = [str(q) for q in doc.get("queues") or []]
            for start, lo, hi, cap, queues in doc.get("buckets") or []:
                idx = math.floor(float(start) / h.width + 1e-9)
                h.buckets[idx] = Bucket(idx * h.width, [float(x) for x in cap][:3],
                                        {names[int(i)]: [float(x) for x in v][:3] for i, v in queues.items()},
                                        float(lo), float(hi))
            lo = doc.get("lastObserved")
            h.last_observed = float(lo) if lo is not None else None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed usage history: {exc}") from None
        return h


def share_weight(weight: float, weight_sum: float, usage: float, k_value: float) -> float:
    """KAI's over-quota share weight for one queue and resource (calcShareWeights): the
    normalised weight plus kValue times how far the queue's usage is below it, floored at 0.
    (The division itself is ``kai._fast.proportion``; this is the formula for docs and tests.)"""
    nw = weight / weight_sum if weight_sum else 0.0
    return max(0.0, nw + k_value * (nw - usage))
