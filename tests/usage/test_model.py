"""kai.usage.model: usageDBConfig as KAI reads it, KAI's windows, decay and normalisation, and
the share weight through the real fair-share division.

Figures come from KAI: the defaults (``usage_params_test.go``), the tumbling reset table
(``TestGetLatestUsageResetTime_TumblingWindow``), the worked examples of
``docs/time-based-fairshare`` (24 GPU-hours of 100 -> 0.24; a GPU-second an hour ago with a
one-hour half-life counts half), the fake usage DB's per-second arithmetic
(``usagedb/fake/fake_with_history.go``) and the share weights of KAI's time-aware e2e test
(weights 10000 and 1, usage 1.0 and 0, kValue 100 -> 0.9899 and 0.0101)."""
from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import numpy as np
import pytest

from kai._fast.proportion import divide_fair_share
from kai.usage.model import (UsageConfigError, UsageHistory, go_duration, parse_duration, parse_usage_db_config,
                           parse_usage_params, retention, share_weight, window_start)
from kai.config import ConfigError, parse_config

H = 3600.0


def ts(*a) -> float:
    return datetime(*a, tzinfo=timezone.utc).timestamp()


# ---------------------------------------------------------------- config
def test_kai_defaults():
    p = parse_usage_params(None)
    assert (p.half_life, p.window_size, p.window_type) == (None, 7 * 24 * H, "sliding")
    assert (p.fetch_interval, p.staleness_period, p.wait_timeout) == (60, 300, 60)
    assert p.resolution == 60


@pytest.mark.parametrize("half,want", [("-1m", None), ("0s", None), (0, None), ("10m", 600), ("1h30m", 5400)])
def test_half_life_zero_or_negative_disables_decay(half, want):
    assert parse_usage_params({"halfLifePeriod": half}).half_life == want


def test_staleness_never_below_fetch_interval():
    p = parse_usage_params({"fetchInterval": "2m", "stalenessPeriod": "30s"})
    assert p.staleness_period == 120


@pytest.mark.parametrize("text,seconds", [("168h", 7 * 24 * H), ("1w", 7 * 24 * H), ("1d12h", 36 * H),
                                          ("1.5h", 5400), ("300ms", 0.3), ("90s", 90)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("seconds,text", [(60, "1m0s"), (7 * 24 * H, "168h0m0s"), (30, "30s"), (0.5, "500ms"),
                                          (3661, "1h1m1s")])
def test_go_duration_strings(seconds, text):
    assert go_duration(seconds) == text


@pytest.mark.parametrize("doc,msg", [
    ({"clientType": "mysql"}, "usageDBConfig.clientType: unknown client type 'mysql'"),
    ({"clientType": "fake"}, "test double"),
    ({"clientType": "prometheus"}, "needs connectionString"),
    ({"clientType": "prometheus", "connectionString": "http://p:9090", "connectionStringEnvVar": "X"},
     "only one is allowed"),
    ({"usageParams": {"windowSize": "a week"}}, "usageDBConfig.usageParams.windowSize: 'a week' is not a duration"),
    ({"usageParams": {"windowType": "hopping"}}, "windowType: 'hopping' is not one of sliding, tumbling, cron"),
    ({"usageParams": {"windowType": "tumbling"}}, "needs tumblingWindowStartTime"),
    ({"usageParams": {"windowType": "cron", "cronString": "invalid"}}, "cronString: 'invalid': expected 5"),
    ({"usageParams": {"tumblingWindowCronString": "@daily"}}, "unknown field 'tumblingWindowCronString'"),
    ({"usageParams": {"windowType": "tumbling", "tumblingWindowStartTime": "yesterday"}}, "not an RFC 3339 time"),
])
def test_config_errors_name_the_field(doc, msg):
    with pytest.raises(UsageConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        parse_usage_db_config(doc)


def test_scheduler_config_carries_usage_db_and_names_the_file():
    cfg = parse_config({"usageDBConfig": {"usageParams": {"windowSize": "1h", "halfLifePeriod": "10m"}}}, "conf.yaml")
    assert cfg.usage_db.client_type == "embedded"
    assert (cfg.usage_db.params.window_size, cfg.usage_db.params.half_life) == (H, 600)
    assert parse_config({}, "c").usage_db is None
    with pytest.raises(ConfigError, match="conf.yaml: usageDBConfig.usageParams.windowType"):
        parse_config({"usageDBConfig": {"usageParams": {"windowType": "x"}}}, "conf.yaml")


# ---------------------------------------------------------------- windows (KAI's tumbling table)
KAI_TUMBLING = [
    ("1h, middle", H, ts(2025, 1, 15, 10), ts(2025, 1, 15, 12, 30), ts(2025, 1, 15, 12)),
    ("1h, exact boundary", H, ts(2025, 1, 15, 10), ts(2025, 1, 15, 13), ts(2025, 1, 15, 12)),
    ("1h, one second after", H, ts(2025, 1, 15, 10), ts(2025, 1, 15, 13, 0, 1), ts(2025, 1, 15, 13)),
    ("15m, between", 900, ts(2025, 1, 15, 14), ts(2025, 1, 15, 14, 37), ts(2025, 1, 15, 14, 30)),
    ("1w, middle of week", 7 * 24 * H, ts(2025, 1, 1), ts(2025, 1, 18, 12), ts(2025, 1, 15)),
    ("start equals now", H, ts(2025, 1, 15, 10), ts(2025, 1, 15, 10), ts(2025, 1, 15, 10)),
    ("start with offset", H, ts(2025, 1, 15, 10, 15, 30), ts(2025, 1, 15, 12, 45, 30), ts(2025, 1, 15, 12, 15, 30)),
    ("start in the future", H, ts(2025, 1, 16), ts(2025, 1, 15, 10), ts(2025, 1, 15, 10)),
]


@pytest.mark.parametrize("name,size,start,now,want", KAI_TUMBLING, ids=[r[0] for r in KAI_TUMBLING])
def test_kai_tumbling_resets(name, size, start, now, want):
    p = parse_usage_params({"windowType": "tumbling", "windowSize": f"{int(size)}s",
                            "tumblingWindowStartTime": datetime.fromtimestamp(start, timezone.utc).isoformat()})
    assert window_start(p, now) == want


def test_sliding_and_cron_windows():
    now = ts(2025, 1, 15, 14, 30)
    assert window_start(parse_usage_params({"windowSize": "2h"}), now) == now - 2 * H
    cron = parse_usage_params({"windowType": "cron", "cronString": "0 */6 * * *"})
    assert window_start(cron, now) == ts(2025, 1, 15, 12)
    assert retention(cron, now) == 6 * H


# ---------------------------------------------------------------- arithmetic
def test_kai_docs_normalisation_24_gpu_hours_of_100():
    """10 GPUs for 10 hours: a queue with 8 GPUs for 3 hours, or 12 for 2, scores 0.24."""
    p = parse_usage_params({"windowSize": "10h"})
    now = 10 * H
    for gpus, hours in ((8, 3), (12, 2)):
        h = UsageHistory(60)
        h.observe(0, now - hours * H, (10, 0, 0), {})
        h.observe(now - hours * H, now, (10, 0, 0), {"q": (gpus, 0, 0)})
        assert h.usage(p, now)["q"][0] == pytest.approx(0.24)


def test_kai_docs_half_life_an_hour_ago_counts_half():
    p = parse_usage_params({"windowSize": "3h", "halfLifePeriod": "1h"})
    now = 3 * H
    h = UsageHistory(1)
    h.observe(0, now, (1, 1, 1), {})
    h.observe(now - H - 1, now - H, (0, 0, 0), {"old": (1, 0, 0)})
    h.observe(now - 1, now, (0, 0, 0), {"new": (1, 0, 0)})
    u = h.usage(p, now)
    assert u["old"][0] / u["new"][0] == pytest.approx(0.5)


def kai_fake_usage(alloc, cap, size, half):
    """KAI's fake usage DB: the last ``size`` one-second samples, the i-th of the window
    weighted 0.5^((size - i) / halfLife); usage = weighted allocation / weighted capacity."""
    lo = max(0, len(alloc) - size)
    a, c = alloc[lo:], cap[lo:]
    w = [0.5 ** ((size - i) / half) if half else 1.0 for i in range(len(a))]
    return sum(x * y for x, y in zip(a, w)) / sum(x * y for x, y in zip(c, w))


@pytest.mark.parametrize("seconds,size,half", [(100, 30, 15), (100, 256, 128), (40, 30, None), (500, 256, None),
                                               (300, 256, 128)])
def test_matches_kai_fake_usage_db_per_second(seconds, size, half):
    """Per-second samples (KAI's simulator settings: window 256, half-life 128; e2e: 30 and 15)."""
    rng = random.Random(seconds * 7 + size)
    cap = [16.0] * seconds
    a = [float(rng.choice([0, 4, 8, 16])) for _ in range(seconds)]
    h = UsageHistory(1, max_buckets=10_000, max_bytes=10**9)
    for i in range(seconds):
        h.observe(i, i + 1, (cap[i], 1, 1), {"a": (a[i], 0, 0)})
    params = parse_usage_params({"windowSize": f"{size}s", **({"halfLifePeriod": f"{half}s"} if half else {})})
    got = h.usage(params, float(seconds))["a"][0]
    assert got == pytest.approx(kai_fake_usage(a, cap, size, half), rel=1e-9)


def test_window_drops_old_usage_and_capacity_changes_count():
    p = parse_usage_params({"windowSize": "1h"})
    h = UsageHistory(60)
    h.observe(0, H, (8, 0, 0), {"a": (8, 0, 0)})            # outside the window at 2h
    h.observe(H, 2 * H, (16, 0, 0), {"a": (4, 0, 0), "b": (12, 0, 0)})
    u = h.usage(p, 2 * H)
    assert u["a"][0] == pytest.approx(0.25) and u["b"][0] == pytest.approx(0.75)
    assert h.usage(p, H)["a"][0] == pytest.approx(1.0)


def test_no_capacity_means_zero_usage():
    h = UsageHistory(60)
    h.observe(0, 600, (0, 4000, 1e9), {"a": (0, 2000, 0)})
    assert h.usage(parse_usage_params({"windowSize": "1h"}), 600)["a"] == (0.0, 0.5, 0.0)


def test_bounded_and_round_trips():
    p = parse_usage_params({"windowSize": "1w"})
    now = 30 * 24 * H
    h = UsageHistory.for_params(p, now)
    assert h.width == 300                                    # a week of 1m steps -> 5m buckets
    rng = random.Random(1)
    t = now - 10 * 24 * H
    while t < now:
        h.observe(t, t + 60, (64, 512_000, 2e12), {f"q{i}": (rng.random() * 4, 1000, 1e9) for i in range(40)})
        t += 60
    before = h.usage(p, now)
    h.prune(p, now)
    assert len(h.buckets) <= h.max_buckets and len(h.to_json()) <= h.max_bytes
    after = UsageHistory.from_json(h.to_json()).usage(p, now)
    for q, v in before.items():
        assert after[q] == pytest.approx(v, rel=1e-3)


def test_unreadable_history_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="version 1"):
        UsageHistory.from_json('{"version": 9}')
    with pytest.raises(ValueError, match="not JSON"):
        UsageHistory.from_json("{")


# ---------------------------------------------------------------- share weights and fair shares
def test_kai_e2e_share_weights():
    wa, wb = 10000.0, 1.0
    assert share_weight(wa, wa + wb, 1.0, 100) == pytest.approx(0.98990, abs=1e-5)
    assert share_weight(wb, wa + wb, 0.0, 100) == pytest.approx(0.01010, abs=1e-5)
    assert share_weight(wa, wa + wb, 1.0, 10000) == 0.0       # floored at 0


def fair(weights, usage, k, total=16.0, request=16.0):
    n = len(weights)
    out = np.zeros((n, 3))
    w = np.array([[x, 1, 1] for x in weights], dtype=float)
    divide_fair_share(np.full(n, -1, np.int32), np.zeros(n, np.int64), np.arange(n, dtype=np.int64),
                      np.zeros((n, 3)), np.full((n, 3), -1.0), w, np.full((n, 3), request),
                      np.array([[u, 0, 0] for u in usage], dtype=float), np.array([total, 0, 0]), k, out)
    return [float(x) for x in out[:, 0]]


@pytest.mark.parametrize("weights,usage,k,want", [
    ([1, 1], [0, 0], 1, [8, 8]),                 # no history: plain over-quota weights
    ([1, 1], [0.5, 0], 1, [5, 11]),              # share weights 0.5 and 1.0 -> 16/3, 32/3; whole GPUs, remainder by size
    ([1, 1], [0.5, 0], 0, [8, 8]),               # kValue 0: history ignored
    ([1, 1], [1.0, 0], 1, [0, 16]),              # 0.5 + (0.5 - 1) = 0: nothing over quota
    ([10000, 1], [1.0, 0], 100, [16, 0]),        # KAI's e2e with kValue 100: 15.84 / 0.16 -> 15 + the remainder
    ([10000, 1], [1.0, 0], 10000, [0, 16]),      # KAI's e2e setting (kValue 10000): the starved queue gets all
])
def test_fair_share_through_the_division(weights, usage, k, want):
    assert fair(weights, usage, k) == pytest.approx(want)
    assert sum(want) == 16 and math.isclose(sum(fair(weights, usage, k)), 16)
