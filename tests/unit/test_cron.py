"""The cron language (README "Cron syntax", and the DST bullet of "Schedules").

A brute-force oracle, written from the README's definitions and sharing no code with the engine,
decides for one value at a time whether a field matches it; random valid expressions are checked
against it in UTC. Pinned cases with exact instants cover the issue's examples, the fall-back
rules in three zones, and the refusals.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.firetimes import ScheduleError, Trigger, fire_times, fires_between, next_fire, validate

# ---- helpers ------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(times: list[datetime]) -> list[str]:
    return [t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]


def fires(expr: str, after: str, count: int, zone: str = "UTC") -> list[str]:
    return iso(fire_times(Trigger(cron=expr, timezone=zone), at(after), count))


def midnights(*days: str) -> list[str]:
    return [f"{d}T00:00:00Z" for d in days]


# ---- the oracle ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    lo: int
    end: int  # the field's last value in its cycle (day of week: Saturday, 6)
    names: tuple[str, ...] = ()  # names[i] is the value lo + i

    @property
    def size(self) -> int:
        return self.end - self.lo + 1


SECOND = Spec("second", 0, 59)
MINUTE = Spec("minute", 0, 59)
HOUR = Spec("hour", 0, 23)
DOM = Spec("day-of-month", 1, 31)
MONTH = Spec("month", 1, 12, tuple(calendar.month_abbr[1:]))
DOW = Spec("day-of-week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
SPECS = (SECOND, MINUTE, HOUR, DOM, MONTH, DOW)


def number(spec: Spec, token: str) -> int:
    upper = token.upper()
    if upper in [n.upper() for n in spec.names]:
        return [n.upper() for n in spec.names].index(upper) + spec.lo
    return int(token)


def plain_matches(spec: Spec, item: str, v: int) -> bool:
    """Whether the value v (day of week 0-6) is in a plain item: a value, a range, a step."""
    body, slash, step_text = item.partition("/")
    step = int(step_text) if slash else 1
    if body in ("*", "?"):
        start, span = spec.lo, spec.end - spec.lo
    elif "-" in body:
        a_text, b_text = body.split("-")
        start, b = number(spec, a_text), number(spec, b_text)
        # a-b counts a, a+1, ... b; past the field's end it goes on from its start (a wrap)
        span = b - start if start <= b else (b - start) % spec.size
    else:
        start = number(spec, body)
        if not slash:
            return v % spec.size == start % spec.size if spec is DOW else v == start
        span = spec.end - start
    distance = (v - start) % spec.size
    return distance <= span and distance % step == 0


def cron_dow(day: date) -> int:
    return (day.weekday() + 1) % 7  # Sunday 0


def month_length(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def nearest_weekday(year: int, month: int, n: int) -> int:
    """The weekday (Mon-Fri) nearest the n-th, within the month."""
    last = calendar.monthrange(year, month)[1]
    weekday = date(year, month, n).weekday()
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return n - 1 if n > 1 else n + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return n + 1 if n < last else n - 2
    return n


def dom_matches(item: str, day: date) -> bool:
    last, upper = month_length(day), item.upper()
    if upper == "L":
        return day.day == last
    if upper == "LW":
        return day.day == nearest_weekday(day.year, day.month, last)
    if upper.startswith("L-"):
        rest = upper[2:]
        if rest.endswith("W"):
            target = last - int(rest[:-1])
            return target >= 1 and day.day == nearest_weekday(day.year, day.month, target)
        return day.day == last - int(rest)
    if upper.endswith("W"):
        n = int(upper[:-1])
        return n <= last and day.day == nearest_weekday(day.year, day.month, n)
    return plain_matches(DOM, item, day.day)


def dow_matches(item: str, day: date) -> bool:
    upper = item.upper()
    if "#" in upper:
        d_text, k_text = upper.split("#")
        return cron_dow(day) == number(DOW, d_text) % 7 and (day.day - 1) // 7 + 1 == int(k_text)
    if upper.endswith("L") or upper.startswith("L"):
        d = number(DOW, upper[:-1] if upper.endswith("L") else upper[1:]) % 7
        return cron_dow(day) == d and day.day + 7 > month_length(day)
    return plain_matches(DOW, item, cron_dow(day))


def field_values(spec: Spec, text: str) -> list[int]:
    return [
        v for v in range(spec.lo, spec.end + 1) if any(plain_matches(spec, i, v) for i in text.split(","))
    ]


class Oracle:
    """Reads an expression field by field and finds fire times by walking the calendar."""

    def __init__(self, expr: str) -> None:
        fields = expr.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        assert len(fields) == 6, expr
        sec, minute, hour, self.dom, month, self.dow = fields
        self.seconds = field_values(SECOND, sec)
        self.minutes = field_values(MINUTE, minute)
        self.hours = field_values(HOUR, hour)
        self.months = set(field_values(MONTH, month))
        self._days: dict[tuple[int, int], list[int]] = {}

    def day_matches(self, day: date) -> bool:
        dom_restricted, dow_restricted = self.dom not in ("*", "?"), self.dow not in ("*", "?")
        by_dom = any(dom_matches(i, day) for i in self.dom.split(","))
        by_dow = any(dow_matches(i, day) for i in self.dow.split(","))
        if dom_restricted and dow_restricted:
            return by_dom or by_dow
        if dom_restricted:
            return by_dom
        if dow_restricted:
            return by_dow
        return True

    def days(self, year: int, month: int) -> list[int]:
        key = (year, month)
        if key not in self._days:
            if month not in self.months:
                self._days[key] = []
            else:
                last = calendar.monthrange(year, month)[1]
                self._days[key] = [d for d in range(1, last + 1) if self.day_matches(date(year, month, d))]
        return self._days[key]

    def never_fires(self) -> bool:
        # The Gregorian calendar repeats every 400 years.
        return not any(self.days(y, m) for y in range(2000, 2400) for m in range(1, 13))

    def matches(self, wall: datetime) -> bool:
        return (
            wall.second in self.seconds
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.day in self.days(wall.year, wall.month)
        )

    def next_after(self, after: datetime) -> datetime | None:
        """The first naive wall time strictly after `after`, by brute force."""
        floor = after.replace(microsecond=0)  # fire times are whole seconds
        year, month = floor.year, floor.month
        while year <= floor.year + 450:
            for d in self.days(year, month):
                day = date(year, month, d)
                if day < floor.date():
                    continue
                for h in self.hours:
                    for m in self.minutes:
                        for s in self.seconds:
                            t = datetime(year, month, d, h, m, s)
                            if t > floor:
                                return t
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None

    def utc_fire_times(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        cursor = after.astimezone(UTC).replace(tzinfo=None)
        while len(out) < count:
            nxt = self.next_after(cursor)
            if nxt is None:
                break
            out.append(nxt.replace(tzinfo=UTC))
            cursor = nxt
        return out


# The oracle itself, on a few facts straight from the README.


def test_oracle_reads_the_readme_examples() -> None:
    assert field_values(HOUR, "23-3/2") == [1, 3, 23]
    assert field_values(HOUR, "22-2") == [0, 1, 2, 22, 23]
    assert field_values(DOM, "20-5/5") == [4, 20, 25, 30]
    assert field_values(MONTH, "9-8/3") == [3, 6, 9, 12]
    assert field_values(MONTH, "nov-FEB") == [1, 2, 11, 12]
    assert field_values(DOW, "sat-tue/2") == [1, 6]
    assert field_values(DOW, "*/2") == [0, 2, 4, 6]
    assert field_values(DOW, "1/2") == [1, 3, 5]
    assert field_values(DOW, "5-7") == [0, 5, 6]
    assert field_values(DOW, "7") == [0]
    assert field_values(MINUTE, "5/15") == [5, 20, 35, 50]
    assert nearest_weekday(2026, 5, 31) == 29  # a Sunday at the month's end: the Friday before
    assert nearest_weekday(2026, 8, 1) == 3  # a Saturday on the 1st: the Monday after
    assert Oracle("0 0 30 2 *").never_fires()
    assert not Oracle("0 0 29 2 *").never_fires()


# ---- random expressions against the oracle ------------------------------------------


def spelled(draw: st.DrawFn, name: str) -> str:
    return draw(st.sampled_from([name, name.lower(), name.capitalize()]))


@st.composite
def plain_items(draw: st.DrawFn, spec: Spec) -> str:
    kind = draw(st.sampled_from(["value", "range", "wrap", "*/s", "a/s", "range/s", "wrap/s"]))
    use_names = bool(spec.names) and draw(st.booleans())
    top = 7 if spec is DOW else spec.end  # 7 is Sunday too, as a value or a range's end

    def token(v: int) -> str:
        return spelled(draw, spec.names[(v - spec.lo) % spec.size]) if use_names else str(v)

    step = f"/{draw(st.integers(1, spec.size))}" if kind.endswith("/s") else ""
    if kind == "value":
        return token(draw(st.integers(spec.lo, top)))
    if kind == "*/s":
        return "*" + step
    if kind == "a/s":
        return token(draw(st.integers(spec.lo, spec.end))) + step
    if kind.startswith("range"):
        a = draw(st.integers(spec.lo, spec.end))
        return f"{token(a)}-{token(draw(st.integers(a, top)))}{step}"
    a = draw(st.integers(spec.lo + 1, spec.end))  # a wrapped range: it ends before it starts
    return f"{token(a)}-{token(draw(st.integers(spec.lo, a - 1)))}{step}"


@st.composite
def dom_specials(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["L", "L-n", "nW", "LW", "L-nW"]))
    if kind == "L-n":
        return f"L-{draw(st.integers(1, 30))}"
    if kind == "nW":
        return f"{draw(st.integers(1, 31))}W"
    if kind == "L-nW":
        return f"L-{draw(st.integers(1, 30))}W"
    return kind


@st.composite
def dow_specials(draw: st.DrawFn) -> str:
    d = draw(st.integers(0, 7))
    day = spelled(draw, DOW.names[d % 7]) if draw(st.booleans()) else str(d)
    kind = draw(st.sampled_from(["#", "dL", "Ld"]))
    if kind == "#":
        return f"{day}#{draw(st.integers(1, 5))}"
    if kind == "dL":
        return f"{day}{draw(st.sampled_from(['L', 'l']))}"
    return f"L{d}"


def field_text(spec: Spec) -> st.SearchStrategy[str]:
    items: st.SearchStrategy[str] = plain_items(spec)
    if spec is DOM:
        items = st.one_of(plain_items(spec), dom_specials())
    elif spec is DOW:
        items = st.one_of(plain_items(spec), dow_specials())
    lists = st.lists(items, min_size=1, max_size=3).map(",".join)
    every = ["*", "?"] if spec in (DOM, DOW) else ["*"]
    return st.one_of(st.sampled_from(every), lists)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    fields = [draw(field_text(spec)) for spec in SPECS]
    return " ".join(fields if draw(st.booleans()) else fields[1:])


instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=300, deadline=None)
@given(expr=expressions(), after=instants, count=st.integers(5, 20))
def test_random_expressions_fire_as_the_oracle_says(expr: str, after: datetime, count: int) -> None:
    oracle = Oracle(expr)
    trigger = Trigger(cron=expr)
    if oracle.never_fires():
        with pytest.raises(ScheduleError, match="never fires"):
            validate(trigger)
        return
    want = oracle.utc_fire_times(after, count)
    assert iso(fire_times(trigger, after, count)) == iso(want)
    assert next_fire(trigger, after) == want[0]


@st.composite
def day_expressions(draw: st.DrawFn) -> str:
    """Midnight on days picked by the day fields' special forms, densely."""
    every = st.sampled_from(["*", "?"])
    dom = draw(st.one_of(every, st.lists(dom_specials(), min_size=1, max_size=2).map(",".join)))
    dow = draw(st.one_of(every, st.lists(dow_specials(), min_size=1, max_size=2).map(",".join)))
    return f"0 0 {dom} * {dow}"


@settings(max_examples=200, deadline=None)
@given(expr=day_expressions(), after=instants, count=st.integers(10, 20))
def test_special_day_forms_fire_as_the_oracle_says(expr: str, after: datetime, count: int) -> None:
    trigger = Trigger(cron=expr)
    assert iso(fire_times(trigger, after, count)) == iso(Oracle(expr).utc_fire_times(after, count))


@st.composite
def sparse_expressions(draw: st.DrawFn) -> str:
    """Days that short months lack: many such expressions never fire, some do."""
    doms = ["29", "30", "31", "29W", "30W", "31W", "L-28", "L-29", "L-30", "L-29W", "L-30W", "30-31"]
    months = draw(
        st.lists(st.sampled_from(["2", "4", "6", "9", "11", "FEB", "apr", "1"]), min_size=1, max_size=3)
    )
    dom = ",".join(draw(st.lists(st.sampled_from(doms), min_size=1, max_size=2)))
    return f"0 0 {dom} {','.join(months)} {draw(st.sampled_from(['*', '?']))}"


@settings(max_examples=150, deadline=None)
@given(expr=sparse_expressions(), after=instants)
def test_an_expression_no_date_matches_is_refused(expr: str, after: datetime) -> None:
    oracle = Oracle(expr)
    trigger = Trigger(cron=expr)
    if oracle.never_fires():
        with pytest.raises(ScheduleError, match="never fires"):
            validate(trigger)
    else:
        assert iso(fire_times(trigger, after, 5)) == iso(oracle.utc_fire_times(after, 5))


# The engine module itself (events/cron.py): naive wall-clock matching.


@settings(max_examples=100, deadline=None)
@given(expr=expressions(), after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)))
def test_cron_module_next_after_and_matches_agree_with_the_oracle(expr: str, after: datetime) -> None:
    from events.cron import parse

    oracle = Oracle(expr)
    if oracle.never_fires():
        return
    cron = parse(expr)
    want = oracle.next_after(after)
    assert want is not None
    assert cron.next_after(after) == want
    assert cron.matches(want)
    assert cron.matches(after.replace(microsecond=0)) == oracle.matches(after.replace(microsecond=0))


def test_day_of_month_to_the_last_day_and_w_first() -> None:
    """`20-L/3` and croniter's `W15` spelling, which schedules stored before events/cron.py use."""
    assert fires("0 0 20-L/3 * *", "2026-02-01T00:00Z", 5) == midnights(
        "2026-02-20", "2026-02-23", "2026-02-26", "2026-03-20", "2026-03-23"
    )
    assert fires("0 0 1-L * *", "2026-02-27T00:00Z", 2) == midnights("2026-02-28", "2026-03-01")
    assert fires("0 0 W31 * *", "2026-01-01T00:00Z", 3) == fires("0 0 31W * *", "2026-01-01T00:00Z", 3)


def test_cron_module_pinned() -> None:
    from events.cron import parse

    cron = parse("0 23-3/2 * * *")
    assert cron.next_after(datetime(2026, 1, 1, 23, 0)) == datetime(2026, 1, 2, 1, 0)
    assert cron.matches(datetime(2026, 1, 2, 3, 0))
    assert not cron.matches(datetime(2026, 1, 2, 2, 0))
    assert parse("0 0 30W * *").next_after(datetime(2026, 2, 1)) == datetime(2026, 3, 30)


# ---- pinned cases from the issue (UTC) ----------------------------------------------


def test_wrapped_hour_range_with_a_step() -> None:
    assert fires("0 23-3/2 * * *", "2026-01-01T00:00Z", 5) == [
        "2026-01-01T01:00:00Z",
        "2026-01-01T03:00:00Z",
        "2026-01-01T23:00:00Z",
        "2026-01-02T01:00:00Z",
        "2026-01-02T03:00:00Z",
    ]


def test_wrapped_day_of_month_range_counts_through_31() -> None:
    assert fires("0 0 20-5/5 * *", "2026-01-01T00:00Z", 10) == midnights(
        "2026-01-04",
        "2026-01-20",
        "2026-01-25",
        "2026-01-30",
        "2026-02-04",
        "2026-02-20",
        "2026-02-25",  # February has no 30th: the 30th is skipped, not moved
        "2026-03-04",
        "2026-03-20",
        "2026-03-25",
    )


def test_wrapped_month_range_with_a_step() -> None:
    assert fires("0 0 1 9-8/3 *", "2026-01-01T00:00Z", 5) == midnights(
        "2026-03-01", "2026-06-01", "2026-09-01", "2026-12-01", "2027-03-01"
    )


def test_wrapped_weekday_range_with_a_step() -> None:
    # sat-tue is Sat, Sun, Mon, Tue; every 2nd: Sat and Mon. 2026-01-01 is a Thursday.
    assert fires("0 0 * * sat-tue/2", "2026-01-01T00:00Z", 4) == midnights(
        "2026-01-03", "2026-01-05", "2026-01-10", "2026-01-12"
    )


def test_weekday_steps_run_to_saturday() -> None:
    assert fires("0 0 * * */2", "2026-01-01T00:00Z", 4) == midnights(  # Sun, Tue, Thu, Sat
        "2026-01-03", "2026-01-04", "2026-01-06", "2026-01-08"
    )
    assert fires("0 0 * * 1/2", "2026-01-01T00:00Z", 4) == midnights(  # Mon, Wed, Fri
        "2026-01-02", "2026-01-05", "2026-01-07", "2026-01-09"
    )
    assert fires("0 0 * * 5-7", "2026-01-01T00:00Z", 4) == midnights(  # Fri, Sat, Sun
        "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-09"
    )


def test_30w_does_not_fire_in_february() -> None:
    # 2026-01-30 is a Friday; February has no 30th; 2026-03-30 is a Monday
    assert fires("0 0 30W * *", "2026-01-01T00:00Z", 3) == midnights("2026-01-30", "2026-03-30", "2026-04-30")
    assert (
        fires_between(Trigger(cron="0 0 30W * *"), at("2026-02-01T00:00Z"), at("2026-03-01T00:00Z"), 10) == []
    )


def test_31w_skips_april_and_looks_back_from_a_sunday() -> None:
    # 2026-03-31 Tue; April has no 31st; 2026-05-31 is a Sunday and June 1 leaves the month: Fri 29th
    assert fires("0 0 31W * *", "2026-03-01T00:00Z", 3) == midnights("2026-03-31", "2026-05-29", "2026-07-31")


def test_1w_on_a_saturday_moves_to_monday() -> None:
    # 2026-08-01 is a Saturday: Friday July 31 is another month, so Monday the 3rd
    assert fires("0 0 1W * *", "2026-07-15T00:00Z", 2) == midnights("2026-08-03", "2026-09-01")


def test_last_friday() -> None:
    expected = midnights("2026-01-30", "2026-02-27", "2026-03-27", "2026-04-24")
    for dow in ("5L", "FRIL", "fril", "L5"):
        assert fires(f"0 0 * * {dow}", "2026-01-01T00:00Z", 4) == expected, dow


def test_last_day_of_month_forms() -> None:
    after = "2027-12-31T12:00Z"  # 2028 is a leap year
    assert fires("0 0 L * *", after, 4) == midnights("2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30")
    assert fires("0 0 L-3 * *", after, 4) == midnights("2028-01-28", "2028-02-26", "2028-03-28", "2028-04-27")
    # 2026: Jan 31 Sat -> 30; Feb 28 Sat -> 27; Mar 31 Tue; Apr 30 Thu; May 31 Sun -> 29
    assert fires("0 0 LW * *", "2026-01-01T00:00Z", 5) == midnights(
        "2026-01-30", "2026-02-27", "2026-03-31", "2026-04-30", "2026-05-29"
    )
    # L-3W: Jan 28 Wed; Feb 25 Wed; Mar 28 Sat -> 27; Apr 27 Mon; May 28 Thu
    assert fires("0 0 L-3W * *", "2026-01-01T00:00Z", 5) == midnights(
        "2026-01-28", "2026-02-25", "2026-03-27", "2026-04-27", "2026-05-28"
    )


def test_l_minus_30_only_in_31_day_months() -> None:
    assert fires("0 0 L-30 * *", "2026-01-15T00:00Z", 3) == midnights(
        "2026-03-01", "2026-05-01", "2026-07-01"
    )


def test_day_of_month_or_nth_weekday() -> None:
    # 2026: Sundays Jan 4, 11; Feb 1 (also the 1st), 8; Mar 1, 8
    assert fires("0 0 1 * SUN#2", "2025-12-31T12:00Z", 6) == midnights(
        "2026-01-01", "2026-01-11", "2026-02-01", "2026-02-08", "2026-03-01", "2026-03-08"
    )


def test_days_of_month_or_second_friday_or_every_friday() -> None:
    # Fridays in January 2026: 2, 9, 16, 23, 30; then Feb 1 (the 1st), Fri Feb 6
    assert fires("0 0 1,15 * 5#2,5", "2025-12-31T12:00Z", 9) == midnights(
        "2026-01-01",
        "2026-01-02",
        "2026-01-09",
        "2026-01-15",
        "2026-01-16",
        "2026-01-23",
        "2026-01-30",
        "2026-02-01",
        "2026-02-06",
    )


def test_fifth_friday_only_in_months_that_have_one() -> None:
    # 2026: Jan 30, May 29, Jul 31, Oct 30
    assert fires("0 0 ? * FRI#5", "2026-01-01T00:00Z", 4) == midnights(
        "2026-01-30", "2026-05-29", "2026-07-31", "2026-10-30"
    )


def test_names_and_question_mark() -> None:
    assert fires("0 0 ? nov-FEB Mon", "2026-02-20T00:00Z", 2) == midnights("2026-02-23", "2026-11-02")
    assert fires("0 0 1 JAN,jul ?", "2026-01-01T00:00Z", 2) == midnights("2026-07-01", "2027-01-01")


def test_six_fields_have_seconds_first() -> None:
    assert fires("*/20 59 23 31 12 *", "2026-12-31T23:59:30Z", 3) == [
        "2026-12-31T23:59:40Z",
        "2027-12-31T23:59:00Z",
        "2027-12-31T23:59:20Z",
    ]


def test_macros() -> None:
    assert fires("@weekly", "2026-01-01T00:00Z", 1) == midnights("2026-01-04")
    assert fires("@monthly", "2026-01-01T00:00Z", 1) == midnights("2026-02-01")
    assert fires("@hourly", "2026-01-01T00:30Z", 1) == ["2026-01-01T01:00:00Z"]


def test_steps_longer_than_the_field_and_sunday_as_7() -> None:
    assert fires("0 */25 * * *", "2026-01-01T00:00Z", 2) == midnights("2026-01-02", "2026-01-03")
    assert fires("0 0 * * 0-7", "2026-01-01T00:00Z", 3) == midnights("2026-01-02", "2026-01-03", "2026-01-04")
    assert fires("0 0 * * 7", "2026-01-01T00:00Z", 2) == midnights("2026-01-04", "2026-01-11")


def test_fire_times_are_strictly_after_and_whole_seconds() -> None:
    assert fires("0 0 * * *", "2026-01-01T00:00:00Z", 1) == midnights("2026-01-02")
    got = fire_times(Trigger(cron="* * * * * *"), at("2026-01-01T00:00:00.5Z"), 2)
    assert iso(got) == ["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"]
    assert all(t.microsecond == 0 and t.tzinfo is UTC for t in got)


# ---- fall back ----------------------------------------------------------------------
# America/New_York 2024-11-03: 01:00-01:59 happens twice, first EDT (05:00-05:59Z), then EST
# (06:00-06:59Z); 02:00 EST is 07:00Z.

NY, FALL_NY = "America/New_York", "2024-11-03T04:00Z"  # 00:00 EDT


def test_new_york_restricted_hours_quarter_hourly_keep_cadence() -> None:
    got = fires("*/15 1-6 * * *", FALL_NY, 10, NY)
    start = at("2024-11-03T05:00Z")
    assert got == iso([start + timedelta(minutes=15 * k) for k in range(10)])


def test_new_york_half_hourly_in_one_hour_fires_in_both_passes() -> None:
    assert fires("*/30 1 * * *", FALL_NY, 5, NY) == [
        "2024-11-03T05:00:00Z",
        "2024-11-03T05:30:00Z",
        "2024-11-03T06:00:00Z",
        "2024-11-03T06:30:00Z",
        "2024-11-04T06:00:00Z",  # 01:00 EST the next day
    ]
    # asked from inside the second pass
    assert fires("*/30 1 * * *", "2024-11-03T06:10Z", 2, NY) == [
        "2024-11-03T06:30:00Z",
        "2024-11-04T06:00:00Z",
    ]


def test_new_york_once_a_day_fires_in_the_first_pass_only() -> None:
    assert fires("30 1 * * *", FALL_NY, 2, NY) == ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"]
    # between the two passes: the repeat of 01:30 (06:30Z) does not fire
    assert fires("30 1 * * *", "2024-11-03T05:45Z", 1, NY) == ["2024-11-04T06:30:00Z"]


@pytest.mark.parametrize("expr", ["0 * * * *", "0 0-23 * * *", "0 */1 * * *", "@hourly", "0 12-11 * * *"])
def test_new_york_every_hour_fires_every_real_hour(expr: str) -> None:
    assert fires(expr, FALL_NY, 4, NY) == [
        "2024-11-03T05:00:00Z",
        "2024-11-03T06:00:00Z",
        "2024-11-03T07:00:00Z",
        "2024-11-03T08:00:00Z",
    ]


def test_new_york_two_named_hours_fire_once_each() -> None:
    # 01:00 only in the first pass; 02:00 EST is 07:00Z; next day 01:00 and 02:00 EST
    assert fires("0 1,2 * * *", FALL_NY, 4, NY) == [
        "2024-11-03T05:00:00Z",
        "2024-11-03T07:00:00Z",
        "2024-11-04T06:00:00Z",
        "2024-11-04T07:00:00Z",
    ]


def test_new_york_asked_from_inside_the_second_pass() -> None:
    # 06:20Z is 01:20 EST, the second time round: the quarter-hours go on from there
    assert fires("*/15 1-6 * * *", "2024-11-03T06:20Z", 3, NY) == [
        "2024-11-03T06:30:00Z",
        "2024-11-03T06:45:00Z",
        "2024-11-03T07:00:00Z",
    ]


def test_new_york_twice_an_hour_by_seconds_counts_as_more_than_once_an_hour() -> None:
    # 01:30:00 and 01:30:30: two fires in the hour, so both passes
    assert fires("*/30 30 1 * * *", FALL_NY, 5, NY) == [
        "2024-11-03T05:30:00Z",
        "2024-11-03T05:30:30Z",
        "2024-11-03T06:30:00Z",
        "2024-11-03T06:30:30Z",
        "2024-11-04T06:30:00Z",
    ]
    # a list of minutes is as good as a step
    assert fires("0,30 1 * * *", FALL_NY, 4, NY) == [
        "2024-11-03T05:00:00Z",
        "2024-11-03T05:30:00Z",
        "2024-11-03T06:00:00Z",
        "2024-11-03T06:30:00Z",
    ]


def test_new_york_spring_forward_in_restricted_hours() -> None:
    # 2024-03-10 02:00 EST (07:00Z) becomes 03:00 EDT: 01:45 EST is 06:45Z, then 02:00-02:45
    # do not exist and share the gap end, 03:00 EDT (07:00Z); 03:15 EDT is 07:15Z
    assert fires("*/15 1-6 * * *", "2024-03-10T06:40Z", 3, NY) == [
        "2024-03-10T06:45:00Z",
        "2024-03-10T07:00:00Z",
        "2024-03-10T07:15:00Z",
    ]
    # only the missing hour: once, at the gap end, then 02:00 EDT the next day (06:00Z)
    assert fires("*/20 2 * * *", "2024-03-10T05:00Z", 2, NY) == [
        "2024-03-10T07:00:00Z",
        "2024-03-11T06:00:00Z",
    ]


def test_berlin_restricted_hour_every_20_minutes() -> None:
    # Europe/Berlin 2024-10-27 03:00 CEST -> 02:00 CET: 02:00-02:59 happens twice, first CEST
    # (UTC+2: 00:00-00:59Z), then CET (UTC+1: 01:00-01:59Z). "*/20 2" fires three times an
    # hour, so it keeps its cadence through both passes: six fires 20 real minutes apart.
    # The day before, 02:00 CEST is 00:00Z; the day after, 02:00 CET is 01:00Z.
    assert fires("*/20 2 * * *", "2024-10-26T12:00Z", 8, "Europe/Berlin") == [
        "2024-10-27T00:00:00Z",
        "2024-10-27T00:20:00Z",
        "2024-10-27T00:40:00Z",
        "2024-10-27T01:00:00Z",
        "2024-10-27T01:20:00Z",
        "2024-10-27T01:40:00Z",
        "2024-10-28T01:00:00Z",
        "2024-10-28T01:20:00Z",
    ]
    # once a day in that hour: the first pass only
    assert fires("40 2 * * *", "2024-10-26T12:00Z", 2, "Europe/Berlin") == [
        "2024-10-27T00:40:00Z",
        "2024-10-28T01:40:00Z",
    ]


def test_lord_howe_half_hour_fall_back_in_a_restricted_hour() -> None:
    # Australia/Lord_Howe 2024-04-07 02:00 LHDT (+11:00, 15:00Z on the 6th) -> 01:30 LHST
    # (+10:30). 01:00-01:29 happen once (14:00-14:29Z); 01:30-01:59 twice: LHDT 14:30-14:59Z,
    # then LHST 15:00-15:29Z. "*/10 1" fires six times an hour, so it keeps a 10-real-minute
    # cadence: 01:00..01:50 LHDT (14:00..14:50Z), then 01:30, 01:40, 01:50 LHST (15:00, 15:10,
    # 15:20Z). The next day 01:00 LHST is 14:30Z.
    assert fires("*/10 1 * * *", "2024-04-06T13:00Z", 10, "Australia/Lord_Howe") == [
        "2024-04-06T14:00:00Z",
        "2024-04-06T14:10:00Z",
        "2024-04-06T14:20:00Z",
        "2024-04-06T14:30:00Z",
        "2024-04-06T14:40:00Z",
        "2024-04-06T14:50:00Z",
        "2024-04-06T15:00:00Z",
        "2024-04-06T15:10:00Z",
        "2024-04-06T15:20:00Z",
        "2024-04-07T14:30:00Z",
    ]
    # 01:45 once a day: 14:45Z (LHDT) only, not 15:15Z; the next day 01:45 LHST is 15:15Z
    assert fires("45 1 * * *", "2024-04-06T13:00Z", 2, "Australia/Lord_Howe") == [
        "2024-04-06T14:45:00Z",
        "2024-04-07T15:15:00Z",
    ]


# ---- refusals -----------------------------------------------------------------------

REFUSED: list[tuple[str, str]] = [
    ("61 * * * *", "minute"),
    ("0 24 * * *", "hour"),
    ("60 0 0 * * *", "second"),
    ("0 0 * * 8", "day-of-week"),
    ("0 0 * * 0-8", "day-of-week"),
    ("0 0 32 * *", "day-of-month"),
    ("0 0 0 * *", "day-of-month"),
    ("0 0 1-32 * *", "day-of-month"),
    ("0 0 * 13 *", "month"),
    ("0 0 * 0 *", "month"),
    ("*/0 * * * *", "minute"),
    ("0 0 * * */0", "day-of-week"),
    ("0 0 * * 5/0", "day-of-week"),
    ("0 */1.5 * * *", "hour"),
    ("0 0 * * 5#6", "day-of-week"),
    ("0 0 * * 5#0", "day-of-week"),
    ("0 0 * * #2", "day-of-week"),
    ("0 0 1-5W * *", "day-of-month"),
    ("0 0 W * *", "day-of-month"),
    ("0 0 W15W * *", "day-of-month"),
    ("0 0 20-L/0 * *", "day-of-month"),
    ("0 0 L-5-L * *", "day-of-month"),
    ("\u00b2 * * * *", "minute"),  # a superscript two: str.isdigit() says yes, int() says no
    ("*/\u00b2 * * * *", "minute"),
    ("\u0663 * * * *", "minute"),  # an Arabic-Indic three: only ASCII digits are numbers here
    ("0 ?/2 * * *", "hour"),
    ("?,5 * * * *", "minute"),
    ("0 0 * ?,1 *", "month"),
    ("0 0 * * L", "day-of-week"),
    ("0 0 * * L-2", "day-of-week"),
    ("0 0 5L * *", "day-of-month"),
    ("0 L * * *", "hour"),
    ("0 0 * L *", "month"),
    ("0 0 * * 1W", "day-of-week"),
    ("0 0 1#2 * *", "day-of-month"),
    ("0 0 L-31 * *", "day-of-month"),
    ("0 0 * FOO *", "month"),
    ("0 0 * JAN-FOO *", "month"),
    ("0 0 * * FUNDAY", "day-of-week"),
    ("1,,2 * * * *", "minute"),
    ("1- * * * *", "minute"),
    ("-1 * * * *", "minute"),
    ("1-2-3 * * * *", "minute"),
    ("? * * * *", "minute"),
    ("0 ? * * *", "hour"),
    ("0 0 * ? *", "month"),
    ("H * * * *", "minute"),
    ("0 R * * *", "hour"),
    ("a b c d e", "minute"),
]


@pytest.mark.parametrize(("expr", "field"), REFUSED)
def test_bad_fields_are_refused_naming_the_field(expr: str, field: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate(Trigger(cron=expr))
    message = str(caught.value)
    assert re.search(f"field '{field}'", message), message
    assert "is not acceptable" not in message and "croniter" not in message.lower()


@pytest.mark.parametrize(
    "expr", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31W 4 *", "0 0 L-30 2,4 ?", "0 0 30,31 feb *"]
)
def test_expressions_no_date_matches_are_refused(expr: str) -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        validate(Trigger(cron=expr))


@pytest.mark.parametrize("expr", ["* * * * * * *", "0 0 * *", ""])
def test_wrong_field_counts_are_refused(expr: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate(Trigger(cron=expr))
    assert "is not acceptable" not in str(caught.value)


@pytest.mark.parametrize("expr", ["0 0 29 2 *", "0 0 ? 2 1#5", "0 0 31 2 5"])
def test_rare_but_real_dates_are_accepted(expr: str) -> None:
    # Feb 29 every 4 years; Feb with five Mondays (2044-02-29 is one); 31 Feb or any Friday
    validate(Trigger(cron=expr))
    oracle = Oracle(expr)
    after = at("2030-01-01T00:00Z")
    assert iso(fire_times(Trigger(cron=expr), after, 3)) == iso(oracle.utc_fire_times(after, 3))
