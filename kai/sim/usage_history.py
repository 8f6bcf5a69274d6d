"""``kai simulate --usage-history FILE``: a queue usage history for time-based fair share, offline.

Two forms (format in docs/simulate.md):

* ``samples``: what each queue held from a moment on, step-wise (a sample holds until the next
  one, the last until the simulated clock), with the cluster's capacity::

      samples:
      - ago: 6h                      # or  time: 2026-03-01T06:00:00Z
        capacity: {gpu: 16, cpu: 64, memory: 256Gi}
        queues: {team-a: {gpu: 16}}
      - ago: 1h
        queues: {team-a: {gpu: 0}, team-b: {gpu: 8}}   # capacity kept from the sample before

* the history kai's embedded usage DB keeps (``data["history.json"]`` of its ConfigMap, or the
  ConfigMap manifest itself, e.g. from ``kubectl get cm kai-scheduler-usage-history -o yaml``).

:func:`load_usage_history` returns a :class:`kai.usage.model.UsageHistory`; the simulator
(``kai.sim.simulator``) computes each queue's usage from it with the config's ``usageParams`` at
each cycle's clock, and adds what the cycle allocated. Errors name the file and the field.
"""
from __future__ import annotations

import json

import yaml

from kai.api.resources import parse_quantity
from kai.usage.model import (DEFAULT_RESOLUTION, UsageConfigError, UsageHistory, UsageParams, _parse_time,
                           parse_duration)
from kai.cache.usage_store import DATA_KEY

_UNITS = {"gpu": 1.0, "cpu": 1000.0, "memory": 1.0}      # -> gpu devices, cpu millicores, memory bytes


class UsageHistoryError(ValueError):
    """An unusable usage history file; the message names the file and field."""


def _vector(doc, where: str) -> tuple[float, float, float]:
    if doc is None:
        return (0.0, 0.0, 0.0)
    if not isinstance(doc, dict):
        raise UsageHistoryError(f"{where}: expected a mapping of gpu, cpu, memory")
    out = []
    for r in ("gpu", "cpu", "memory"):
        v = doc.get(r, 0)
        try:
            out.append(float(parse_quantity(v)) * _UNITS[r])
        except (ValueError, ArithmeticError, TypeError):
            raise UsageHistoryError(f"{where}.{r}: {v!r} is not a quantity") from None
    extra = set(doc) - set(_UNITS)
    if extra:
        raise UsageHistoryError(f"{where}: unknown resource(s) {sorted(extra)} (gpu, cpu, memory)")
    return tuple(out)


def _from_samples(samples, path: str, now: float, params: UsageParams) -> UsageHistory:
    if not isinstance(samples, list) or not samples:
        raise UsageHistoryError(f"{path}: samples: expected a non-empty list")
    points = []
    for i, s in enumerate(samples):
        where = f"{path}: samples[{i}]"
        if not isinstance(s, dict):
            raise UsageHistoryError(f"{where}: expected a mapping with time or ago, capacity, queues")
        unknown = set(s) - {"time", "ago", "capacity", "queues"}
        if unknown:
            raise UsageHistoryError(f"{where}: unknown field(s) {sorted(unknown)}")
        try:
            if ("time" in s) == ("ago" in s):
                raise UsageHistoryError(f"{where}: give exactly one of time (RFC 3339) or ago (a duration)")
            t = _parse_time(s["time"], f"{where}.time") if "time" in s else now - parse_duration(s["ago"], f"{where}.ago")
        except UsageConfigError as exc:
            raise UsageHistoryError(str(exc)) from None
        cap = _vector(s["capacity"], f"{where}.capacity") if "capacity" in s else None
        queues = s.get("queues") or {}
        if not isinstance(queues, dict):
            raise UsageHistoryError(f"{where}.queues: expected queue name -> {{gpu, cpu, memory}}")
        points.append((t, cap, {str(q): _vector(v, f"{where}.queues.{q}") for q, v in queues.items()}, where))
    for (t0, *_), (t1, *_rest) in zip(points, points[1:]):
        if t1 < t0:
            raise UsageHistoryError(f"{_rest[-1]}: samples must be in time order")
    if points[0][1] is None:
        raise UsageHistoryError(f"{points[0][3]}.capacity: the first sample needs the cluster capacity")
    h = UsageHistory(min(params.resolution, DEFAULT_RESOLUTION), max_buckets=10**6, max_bytes=2**62)
    cap = points[0][1]
    for i, (t, c, queues, where) in enumerate(points):
        cap = c if c is not None else cap
        end = points[i + 1][0] if i + 1 < len(points) else now
        if end > t:
            h.observe(t, end, cap, queues)
    return h


def load_usage_history(path: str, now: float, params: UsageParams) -> UsageHistory:
    """Read ``path`` (YAML or JSON) in either form; ``now`` resolves ``ago``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UsageHistoryError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageHistoryError(f"{path}: not valid YAML or JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        stored = (doc.get("data") or {}).get(DATA_KEY)
        if not stored:
            raise UsageHistoryError(f"{path}: ConfigMap has no data.{DATA_KEY}")
        doc = stored
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as exc:
            raise UsageHistoryError(f"{path}: data.{DATA_KEY}: not JSON: {exc}") from None
    if isinstance(doc, dict) and "version" in doc:
        try:
            return UsageHistory.from_json(json.dumps(doc), max_buckets=10**6, max_bytes=2**62)
        except ValueError as exc:
            raise UsageHistoryError(f"{path}: {exc}") from None
    if isinstance(doc, dict) and "samples" in doc:
        return _from_samples(doc["samples"], path, now, params)
    raise UsageHistoryError(f"{path}: expected 'samples' (see docs/simulate.md) or a kai usage history "
                            f"(its ConfigMap, or data.{DATA_KEY})")
