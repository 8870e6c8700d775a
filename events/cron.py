"""Cron expressions: parsed once into value sets and day rules, matched against wall-clock time.

Our own parser, not croniter's: peers agree on forms croniter computes differently or refuses
(wrapped ranges with steps, `5L`, `LW`, `L-3`, `nW` past a short month's end, `#` under the
day-of-month/day-of-week OR rule), and every refusal here names the field and the reason.
The syntax is the README's "Cron syntax" section; this module is that section in code.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from events.base import DomainError

MAX_CRON_LENGTH = 200
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_YEAR = 9999
# Every weekday/month-length combination recurs within 400 years (the Gregorian cycle).
_SEARCH_YEARS = 400
_SECOND = timedelta(seconds=1)

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


class ScheduleError(DomainError):
    code = "invalid_schedule"


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    lo: int
    hi: int  # the highest value written (7 for day of week)
    size: int  # values in one cycle of the field (7 for day of week: 7 is Sunday again)
    names: dict[str, int]


SECOND = _Field("second", 0, 59, 60, {})
MINUTE = _Field("minute", 0, 59, 60, {})
HOUR = _Field("hour", 0, 23, 24, {})
DOM = _Field("day-of-month", 1, 31, 31, {})
MONTH = _Field("month", 1, 12, 12, _MONTHS)
DOW = _Field("day-of-week", 0, 7, 7, _DAYS)
_ORDER = (SECOND, MINUTE, HOUR, DOM, MONTH, DOW)

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() is true of "²", which int() refuses
_HASHED = re.compile(r"[hr](\(|/|$)", re.IGNORECASE)
_LAST_DOM = re.compile(r"l(?:-([0-9]+))?(w?)")  # L, L-3, LW, L-3W
_NEAREST = re.compile(r"([0-9]+)w|w([0-9]+)")  # 15W (W15, croniter's spelling)
_TO_LAST = re.compile(r"([0-9]+)-l(?:/([0-9]+))?")  # 20-L, 20-L/3: to the month's last day
_NTH = re.compile(r"([0-9a-z]+)#([0-9]+)")  # 5#2, FRI#2
_LAST_DOW = re.compile(r"([0-9a-z]+)l|l([0-9a-z]+)")  # 5L, FRIL, L5


@dataclass(frozen=True, slots=True)
class _Days:
    """One day field's rule: plain values plus the month-relative forms."""

    values: frozenset[int] = frozenset()
    last: tuple[tuple[int, bool], ...] = ()  # day of month: (days before the last, nearest weekday)
    nearest: tuple[int, ...] = ()  # day of month nW
    to_last: tuple[tuple[int, int], ...] = ()  # day of month n-L/step: (n, step)
    nth: tuple[tuple[int, int], ...] = ()  # day of week: (weekday, k) for the k-th
    last_of: tuple[int, ...] = ()  # day of week: weekdays whose last one in the month fires


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression. Day sets are computed per (month length, weekday of the 1st):
    28 combinations cover every month there is."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    # (length - 28) * 7 + weekday of the 1st (Sunday 0) -> the days that fire
    _days: tuple[tuple[int, ...], ...]
    all_days: bool

    @property
    def per_hour(self) -> int:
        """Fires in an hour that matches: more than one keeps its cadence through a repeat."""
        return len(self.seconds) * len(self.minutes)

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    @property
    def every_second(self) -> bool:
        return self.all_days and len(self.months) == 12 and self.every_hour and self.per_hour == 3600

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = calendar.monthrange(year, month)  # first: Monday 0
        return self._days[(length - 28) * 7 + (first + 1) % 7]

    def matches(self, wall: datetime) -> bool:
        return (
            wall.second in self.seconds
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and wall.day in self.days(wall.year, wall.month)
        )

    def next_after(self, wall: datetime) -> datetime | None:
        """The first matching wall-clock second strictly after `wall` (naive), or None if
        there is none before year 10000."""
        if wall.year > MAX_YEAR or wall >= datetime(MAX_YEAR, 12, 31, 23, 59, 59):
            return None
        t = wall.replace(microsecond=0, tzinfo=None) + _SECOND
        for year in range(t.year, min(t.year + _SEARCH_YEARS, MAX_YEAR) + 1):
            at_year = year == t.year
            for month in _from(self.months, t.month if at_year else 1):
                at_month = at_year and month == t.month
                days = self.days(year, month)
                for day in _from(days, t.day if at_month else 1):
                    at_day = at_month and day == t.day
                    found = self._time_of_day(t if at_day else None)
                    if found is not None:
                        return datetime(year, month, day, *found)
        return None

    def _time_of_day(self, t: datetime | None) -> tuple[int, int, int] | None:
        """The first (hour, minute, second) at or after t's time of day, or the day's first."""
        h0, m0, s0 = (t.hour, t.minute, t.second) if t is not None else (0, 0, 0)
        for hour in _from(self.hours, h0):
            at_hour = hour == h0
            for minute in _from(self.minutes, m0 if at_hour else 0):
                at_minute = at_hour and minute == m0
                for second in _from(self.seconds, s0 if at_minute else 0):
                    return hour, minute, second
        return None


def _from(values: tuple[int, ...], lo: int) -> tuple[int, ...]:
    return values[bisect_left(values, lo) :]


def normalize(cron: object) -> str:
    """Whitespace collapsed and macros lowercased; raises ScheduleError for a non-string,
    an empty or an overlong expression."""
    if not isinstance(cron, str):
        raise ScheduleError(f"cron: must be a string, got {type(cron).__name__}")
    expr = " ".join(cron.split())
    if not expr:
        raise ScheduleError("cron: expression is empty")
    if len(expr) > MAX_CRON_LENGTH:
        raise ScheduleError(f"cron: expression is longer than {MAX_CRON_LENGTH} characters")
    return expr.lower() if expr.startswith("@") else expr


@lru_cache(maxsize=4096)
def parse(cron: str) -> Cron:
    """Parse an expression, or raise ScheduleError naming the field and what is wrong."""
    expr = normalize(cron)
    if expr.startswith("@"):
        if expr not in MACROS:
            raise ScheduleError(f"cron: {expr!r} is not supported; the macros are {', '.join(MACROS)}")
        fields = ["0", *MACROS[expr].split()]
    else:
        fields = expr.split()
        if len(fields) not in (5, 6):
            raise ScheduleError(
                f"cron: expected 5 fields, or 6 with seconds first, got {len(fields)} in {expr!r}"
            )
        if len(fields) == 5:
            fields = ["0", *fields]
    sec, minute, hour, dom, month, dow = (
        _field(spec, text.lower(), expr) for spec, text in zip(_ORDER, fields, strict=True)
    )
    assert isinstance(dom, _Days) and isinstance(dow, _Days)
    assert not isinstance(sec, _Days) and not isinstance(minute, _Days)
    assert not isinstance(hour, _Days) and not isinstance(month, _Days)
    dom_any, dow_any = fields[3] in ("*", "?"), fields[5] in ("*", "?")
    table = tuple(
        _month_days(dom, dow, dom_any, dow_any, length, first)
        for length in (28, 29, 30, 31)
        for first in range(7)
    )
    if not any(table[(n - 28) * 7 + first] for m in month for n in _lengths(m) for first in range(7)):
        fields_ = ", ".join(
            f.name
            for f, text in ((DOM, fields[3]), (MONTH, fields[4]), (DOW, fields[5]))
            if text not in ("*", "?")
        )
        raise ScheduleError(f"cron: {expr!r} never fires: no date matches its fields {fields_}")
    all_days = all(len(days) == 28 + i // 7 for i, days in enumerate(table))
    sec_, min_, hour_, month_ = (tuple(sorted(v)) for v in (sec, minute, hour, month))
    return Cron(expr, sec_, min_, hour_, month_, table, all_days)


def _lengths(month: int) -> tuple[int, ...]:
    return (28, 29) if month == 2 else (30,) if month in (4, 6, 9, 11) else (31,)


def _month_days(
    dom: _Days, dow: _Days, dom_any: bool, dow_any: bool, length: int, first: int
) -> tuple[int, ...]:
    """The days of a month `length` days long whose 1st is weekday `first` (Sunday 0)."""
    if dom_any and dow_any:
        return tuple(range(1, length + 1))
    by_dom = set() if dom_any else _dom_days(dom, length, first)
    by_dow = set() if dow_any else _dow_days(dow, length, first)
    # Both restricted: either matches (as Vixie cron, robfig and croniter do), for every form.
    return tuple(sorted(by_dom | by_dow))


def _weekday(day: int, first: int) -> int:
    return (first + day - 1) % 7


def _dom_days(rule: _Days, length: int, first: int) -> set[int]:
    days = {d for d in rule.values if d <= length}
    for before, weekday in rule.last:
        day = length - before
        if day >= 1:
            days.add(_nearest_weekday(day, length, first) if weekday else day)
    for start, step in rule.to_last:
        days.update(range(start, length + 1, step))
    for day in rule.nearest:
        if day <= length:  # a day the month does not have does not fire that month
            days.add(_nearest_weekday(day, length, first))
    return days


def _nearest_weekday(day: int, length: int, first: int) -> int:
    """The Monday-Friday nearest `day`, without leaving the month (Quartz's W)."""
    weekday = _weekday(day, first)
    if weekday == 6:  # Saturday: the Friday before, or the Monday after the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 0:  # Sunday: the Monday after, or the Friday before the last day
        return day + 1 if day < length else day - 2
    return day


def _dow_days(rule: _Days, length: int, first: int) -> set[int]:
    days = {d for d in range(1, length + 1) if _weekday(d, first) in rule.values}
    for weekday, k in rule.nth:
        day = 1 + (weekday - first) % 7 + 7 * (k - 1)
        if day <= length:
            days.add(day)
    for weekday in rule.last_of:
        days.add(length - (_weekday(length, first) - weekday) % 7)
    return days


# ---- fields -------------------------------------------------------------------------


def _field(spec: _Field, text: str, expr: str) -> set[int] | _Days:
    """One field's values (the time fields and month) or its day rule."""
    if text == "?" and spec not in (DOM, DOW):
        raise _error(spec, "'?' is only allowed in day-of-month and day-of-week", expr)
    values: set[int] = set()
    rule = _Days()
    for item in text.split(","):
        if not item:
            raise _error(spec, f"{text.upper()!r} has an empty list item", expr)
        if _HASHED.match(item):
            raise _error(spec, f"uses {item.upper()!r}; H and R are not supported", expr)
        special = _dom_special if spec is DOM else _dow_special if spec is DOW else None
        if special is not None and (found := special(item, expr)) is not None:
            rule = _merge(rule, found)
        else:
            _misplaced(spec, item, expr)
            values.update(_item(spec, item, expr))
    if spec is DOW:
        values = {v % 7 for v in values}
    if spec in (DOM, DOW):
        return _merge(rule, _Days(values=frozenset(values)))
    return values


def _merge(a: _Days, b: _Days) -> _Days:
    return _Days(
        a.values | b.values,
        a.last + b.last,
        a.nearest + b.nearest,
        a.to_last + b.to_last,
        a.nth + b.nth,
        a.last_of + b.last_of,
    )


def _misplaced(spec: _Field, item: str, expr: str) -> None:
    """Say what L, W and # mean when they turn up where they do not belong."""
    if "#" in item:
        where = "day-of-week (5#2: the second Friday)"
        raise _error(spec, f"{item.upper()!r}: '#' needs a single weekday and a count 1-5 in {where}", expr)
    if spec is DOW and item == "l":
        raise _error(spec, "'L' alone: say which day, e.g. 5L for the last Friday", expr)
    if spec is DOW and "w" in item.replace("wed", ""):
        raise _error(spec, f"{item.upper()!r}: 'W' (nearest weekday) belongs in day-of-month, e.g. 15W", expr)
    if spec is DOM and re.fullmatch(r"[0-9]+l", item):
        raise _error(
            spec,
            f"{item.upper()!r}: here L is the last day (L, L-3); the last Friday is 5L in day-of-week",
            expr,
        )
    if spec is DOM and "l" in item:  # every L form that means something was matched already
        raise _error(spec, f"{item.upper()!r} is not one of L, L-n, LW, L-nW (n up to 30)", expr)
    if spec is DOW and "l" in item:
        raise _error(spec, f"{item.upper()!r}: the last Friday of the month is written 5L, FRIL or L5", expr)
    if spec is DOM and "w" in item:
        raise _error(spec, f"{item.upper()!r}: 'W' needs a single day, e.g. 15W, LW or L-3W", expr)
    if spec not in (DOM, DOW) and ("l" in item or "w" in item) and not spec.names:
        raise _error(
            spec, f"{item.upper()!r}: L and W are only allowed in day-of-month and day-of-week", expr
        )


def _dom_special(item: str, expr: str) -> _Days | None:
    if m := _LAST_DOM.fullmatch(item):
        before = int(m.group(1) or 0)
        if before > 30:
            raise _error(DOM, f"{item.upper()!r}: L-n counts back at most 30 days", expr)
        return _Days(last=((before, bool(m.group(2))),))
    if m := _NEAREST.fullmatch(item):
        return _Days(nearest=(_value(DOM, m.group(1) or m.group(2), expr),))
    if m := _TO_LAST.fullmatch(item):
        step = m.group(2)
        if step is not None and int(step) < 1:
            raise _error(DOM, f"step {step!r} must be a whole number >= 1", expr)
        return _Days(to_last=((_value(DOM, m.group(1), expr), int(step or 1)),))
    return None


def _dow_special(item: str, expr: str) -> _Days | None:
    if m := _NTH.fullmatch(item):
        k = m.group(2)
        if not 1 <= int(k) <= 5:
            raise _error(DOW, f"{item.upper()!r}: the count after '#' must be 1-5, got {k}", expr)
        return _Days(nth=((_value(DOW, m.group(1), expr) % 7, int(k)),))
    if (m := _LAST_DOW.fullmatch(item)) and item not in _DAYS:
        return _Days(last_of=(_value(DOW, m.group(1) or m.group(2), expr) % 7,))
    return None


def _item(spec: _Field, item: str, expr: str) -> list[int]:
    """The values of `*`, `v`, `a-b` (wrapping when a > b) and any of them with `/step`."""
    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (_DIGITS.fullmatch(step_text) and int(step_text) > 0):
            raise _error(spec, f"step {step_text!r} must be a whole number >= 1", expr)
        step = int(step_text)
    top = spec.lo + spec.size - 1  # the cycle's last value: 6 for day of week
    if body == "?" and spec not in (DOM, DOW):
        raise _error(spec, "'?' is only allowed in day-of-month and day-of-week", expr)
    if body in ("*", "?"):
        start, end = spec.lo, top
    elif "-" in body:
        parts = body.split("-")
        if len(parts) != 2 or not all(parts):
            raise _error(spec, f"{item.upper()!r} is not a range like 1-5", expr)
        start, end = (_value(spec, p, expr) for p in parts)
        if spec is DOW and start == 7:  # 7-2 is Sunday to Tuesday, 7-7 is Sunday
            start, end = 0, 0 if end == 7 else end
    else:
        start = _value(spec, body, expr)
        end = top if slash else start
    if start <= end:
        return list(range(start, end + 1, step))
    # A range that wraps past the field's end counts on across it: 23-3/2 is 23, 1, 3.
    span = (end - start) % spec.size
    return [spec.lo + (start - spec.lo + k) % spec.size for k in range(0, span + 1, step)]


def _value(spec: _Field, text: str, expr: str) -> int:
    if _DIGITS.fullmatch(text):
        value = int(text)
        if not spec.lo <= value <= spec.hi:
            raise _error(spec, f"value {value} is out of range {spec.lo}-{spec.hi}", expr)
        return value
    if text in spec.names:
        return spec.names[text]
    if spec.names:
        kind = "month" if spec is MONTH else "day"
        raise _error(spec, f"{text.upper()!r} is not a {kind} name or a number {spec.lo}-{spec.hi}", expr)
    raise _error(spec, f"{text.upper()!r} is not a number {spec.lo}-{spec.hi}", expr)


def _error(spec: _Field, what: str, expr: str) -> ScheduleError:
    return ScheduleError(f"cron: field {spec.name!r} {what} in {expr!r}")
