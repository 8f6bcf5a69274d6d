"""kai.usage.cron: the cron forms KAI's cron usage window reads, and the reset before a moment.

The reset table is KAI's own (``TestGetLatestUsageResetTime_CronWindow`` in
``pkg/scheduler/cache/usagedb/prometheus/prometheus_test.go``): the latest occurrence strictly
before now; exactly at an occurrence, the one before it."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kai.usage.cron import CronError, parse_cron


def T(*a):
    return datetime(*a, tzinfo=timezone.utc)


KAI_CRON_RESETS = [
    ("hourly, middle of hour", "0 * * * *", T(2025, 1, 15, 14, 30), T(2025, 1, 15, 14, 0)),
    ("hourly, exact hour", "0 * * * *", T(2025, 1, 15, 14, 0), T(2025, 1, 15, 13, 0)),
    ("daily midnight, morning", "0 0 * * *", T(2025, 1, 15, 10, 30), T(2025, 1, 15, 0, 0)),
    ("daily midnight, before midnight", "0 0 * * *", T(2025, 1, 15, 23, 59, 59), T(2025, 1, 15, 0, 0)),
    ("every 6 hours, between", "0 */6 * * *", T(2025, 1, 15, 10, 0), T(2025, 1, 15, 6, 0)),
    ("every 6 hours, exact", "0 */6 * * *", T(2025, 1, 15, 12, 0), T(2025, 1, 15, 6, 0)),
    ("weekly monday noon, wednesday", "0 12 * * 1", T(2025, 1, 15, 15, 0), T(2025, 1, 13, 12, 0)),
    ("monthly, March 31 23:00", "0 0 1 * *", T(2025, 3, 31, 23, 0), T(2025, 3, 1, 0, 0)),
    ("every 15 minutes, between", "*/15 * * * *", T(2025, 1, 15, 14, 37), T(2025, 1, 15, 14, 30)),
    ("every 15 minutes, exact", "*/15 * * * *", T(2025, 1, 15, 14, 45), T(2025, 1, 15, 14, 30)),
]


@pytest.mark.parametrize("name,expr,now,want", KAI_CRON_RESETS, ids=[r[0] for r in KAI_CRON_RESETS])
def test_kai_reset_table(name, expr, now, want):
    c = parse_cron(expr)
    got = c.previous(now)
    assert got == want
    assert got < now <= c.next(got)        # KAI's two extra checks


@pytest.mark.parametrize("expr,now,want", [
    ("@daily", T(2025, 1, 15, 10), T(2025, 1, 15)),
    ("@hourly", T(2025, 1, 15, 10, 5), T(2025, 1, 15, 10)),
    ("@weekly", T(2025, 1, 15, 10), T(2025, 1, 12)),             # Sunday
    ("@monthly", T(2025, 1, 15), T(2025, 1, 1)),
    ("@yearly", T(2025, 1, 15), T(2025, 1, 1)),
    ("0 9 * * MON-FRI", T(2025, 1, 18, 12), T(2025, 1, 17, 9)),  # Saturday -> Friday
    ("0 0 * JUN,JUL 7", T(2025, 1, 15), T(2024, 7, 28)),         # 7 = Sunday
    ("30 0 0 * * * 2024", T(2025, 1, 15), T(2024, 12, 31, 0, 0, 30)),   # 7 fields: seconds, year
    ("0 0 1 * 1", T(2025, 1, 10), T(2025, 1, 6)),                # day-of-month OR day-of-week
    ("0 0 29 2 *", T(2025, 1, 15), T(2024, 2, 29)),
])
def test_forms(expr, now, want):
    assert parse_cron(expr).previous(now) == want


@pytest.mark.parametrize("expr,msg", [
    ("invalid", "expected 5, 6 or 7 fields"),
    ("", "empty cron string"),
    ("61 * * * *", "minute field '61': 61 is outside 0-59"),
    ("* * * * MON#2", "'#' extension"),
    ("0 0 L * *", "'L' extension"),
    ("*/0 * * * *", "step '0'"),
    ("5-1 * * * *", "runs backwards"),
    ("0 0 * FOO *", "'FOO' is not a number or a name"),
])
def test_errors(expr, msg):
    with pytest.raises(CronError, match=msg.replace("(", r"\(").replace("#", "#")):
        parse_cron(expr)
