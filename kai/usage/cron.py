"""Cron expressions for KAI's ``cron`` usage window (``usageParams.cronString``).

KAI parses the string with a cronexpr library and resets usage at each occurrence; this module
reads the same forms and finds the occurrence before / after a moment, in UTC:

* 5 fields ``minute hour day-of-month month day-of-week``; 6 fields add a trailing ``year``;
  7 fields lead with ``second`` and end with ``year``;
* per field: ``*`` or ``?``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n`` and ``a/n``,
  lists ``a,b``; month names ``JAN``..``DEC`` and weekday names ``SUN``..``SAT`` (0 and 7
  are Sunday);
* the macros ``@yearly`` / ``@annually``, ``@monthly``, ``@weekly``, ``@daily`` /
  ``@midnight``, ``@hourly``.

When both day-of-month and day-of-week are restricted a day matches either (classic cron).
The ``L``, ``W`` and ``#`` extensions are refused with a :class:`CronError` naming them.
Used by :mod:`kai.usage.model`; no I/O.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MACROS = {
    "@yearly": "0 0 0 1 1 * *", "@annually": "0 0 0 1 1 * *", "@monthly": "0 0 0 1 * * *",
    "@weekly": "0 0 0 * * 0 *", "@daily": "0 0 0 * * * *", "@midnight": "0 0 0 * * * *",
    "@hourly": "0 0 * * * * *",
}
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {d.upper(): (i + 1) % 7 for i, d in enumerate(calendar.day_abbr)}   # MON=1 .. SUN=0
#: (name, low, high, names)
_FIELDS = (("second", 0, 59, None), ("minute", 0, 59, None), ("hour", 0, 23, None),
           ("day-of-month", 1, 31, None), ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS),
           ("year", 1970, 2099, None))
_SEARCH_DAYS = 366 * 8 + 2     # enough for any year field, and Feb 29 in a leap year


class CronError(ValueError):
    """A cron string kai cannot read; the message names the field."""


@dataclass(frozen=True)
class CronExpr:
    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]        # 0 = Sunday
    years: frozenset[int] | None    # None: any
    dom_any: bool
    dow_any: bool

    def _day_matches(self, d) -> bool:
        if d.month not in self.months or (self.years is not None and d.year not in self.years):
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.dom_any and self.dow_any:
            return True
        if self.dom_any:
            return dow
        if self.dow_any:
            return dom
        return dom or dow

    def _times(self):
        return [(h, m, s) for h in self.hours for m in self.minutes for s in self.seconds]

    def previous(self, now: datetime) -> datetime | None:
        """The latest occurrence strictly before ``now`` (KAI: at an exact occurrence the
        window that just ended is the one before)."""
        now = _utc(now)
        times = sorted(self._times(), reverse=True)
        day = now.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for h, m, s in times:
                    t = datetime(day.year, day.month, day.day, h, m, s, tzinfo=timezone.utc)
                    if t < now:
                        return t
            day -= timedelta(days=1)
        return None

    def next(self, now: datetime) -> datetime | None:
        """The first occurrence strictly after ``now``."""
        now = _utc(now)
        times = sorted(self._times())
        day = now.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for h, m, s in times:
                    t = datetime(day.year, day.month, day.day, h, m, s, tzinfo=timezone.utc)
                    if t > now:
                        return t
            day += timedelta(days=1)
        return None


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _field(text: str, name: str, low: int, high: int, names) -> tuple[set[int], bool]:
    """The values of one field and whether it was unrestricted (``*`` / ``?``)."""
    if text in ("*", "?"):
        return set(range(low, high + 1)), True
    out: set[int] = set()
    for part in text.split(","):
        for token in re.split(r"[-/]", part):
            if names and token.upper() in names:
                continue
            for bad in ("L", "W", "#"):
                if bad in token.upper():
                    raise CronError(f"{name} field {text!r}: the {bad!r} extension is not supported")
        rng, slash, step_s = part.partition("/")
        step = 1
        if slash:
            if not step_s.isdigit() or int(step_s) == 0:
                raise CronError(f"{name} field {text!r}: step {step_s!r} must be a positive number")
            step = int(step_s)
        if rng in ("*", "?"):
            lo, hi = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            lo, hi = _value(a, name, text, low, high, names), _value(b, name, text, low, high, names)
        else:
            lo = _value(rng, name, text, low, high, names)
            hi = high if slash else lo
        if lo > hi:
            raise CronError(f"{name} field {text!r}: range {rng!r} runs backwards")
        out.update(range(lo, hi + 1, step))
    return out, False


def _value(s: str, name: str, text: str, low: int, high: int, names) -> int:
    if names and s.upper() in names:
        return names[s.upper()]
    if not s.isdigit():
        raise CronError(f"{name} field {text!r}: {s!r} is not a number" + (" or a name" if names else ""))
    v = int(s)
    if not low <= v <= high:
        raise CronError(f"{name} field {text!r}: {v} is outside {low}-{high}")
    return v


def parse_cron(text: str) -> CronExpr:
    """Parse a cron string (5, 6 or 7 fields, or a macro); CronError names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise CronError("empty cron string")
    src = text.strip()
    expanded = MACROS.get(src.lower(), src)
    parts = expanded.split()
    if len(parts) == 5:
        parts = ["0", *parts, "*"]
    elif len(parts) == 6:
        parts = ["0", *parts]
    elif len(parts) != 7:
        raise CronError(f"{src!r}: expected 5, 6 or 7 fields (or a macro such as @daily), got {len(parts)}")
    values = []
    unrestricted = []
    for part, (name, low, high, names) in zip(parts, _FIELDS):
        v, anyv = _field(part, name, low, high, names)
        values.append(v)
        unrestricted.append(anyv)
    sec, minute, hour, dom, month, dow, year = values
    dow = {d % 7 for d in dow}
    return CronExpr(text=src, seconds=tuple(sorted(sec)), minutes=tuple(sorted(minute)),
                    hours=tuple(sorted(hour)), days=frozenset(dom), months=frozenset(month),
                    weekdays=frozenset(dow), years=None if unrestricted[6] else frozenset(year),
                    dom_any=unrestricted[3], dow_any=unrestricted[5])
