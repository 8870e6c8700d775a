"""Fire times for cron and interval triggers: pinned DST cases with exact instants, and
properties checked against a brute-force reading of the rules over many zones."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from events.base import DomainError
from events.firetimes import (
    ScheduleError,
    Trigger,
    describe,
    fire_times,
    fires_between,
    jitter_s,
    next_fire,
    validate,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(times: list[datetime]) -> list[str]:
    return [t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]


def cron_fires(expr: str, zone: str, after: str, count: int) -> list[str]:
    return iso(fire_times(Trigger(cron=expr, timezone=zone), at(after), count))


def every(minutes: int, first: str, count: int) -> list[str]:
    return iso([at(first) + timedelta(minutes=minutes * k) for k in range(count)])


# ---- pinned DST cases ---------------------------------------------------------------


def test_new_york_spring_forward_fixed_time_fires_once_at_the_gap_end() -> None:
    got = fire_times(Trigger(cron="30 2 * * *", timezone="America/New_York"), at("2024-03-08T12:00Z"), 3)
    assert iso(got) == ["2024-03-09T07:30:00Z", "2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"]
    local = [t.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M %Z") for t in got]
    assert local == ["02:30 EST", "03:00 EDT", "02:30 EDT"]
    assert all(t.tzinfo is UTC for t in got)


def test_new_york_quarter_hours_across_the_gap() -> None:
    # 01:45 EST, then 02:00-02:45 do not exist and collapse into 03:00 EDT
    assert cron_fires("*/15 * * * *", "America/New_York", "2024-03-10T06:20Z", 4) == [
        "2024-03-10T06:30:00Z",
        "2024-03-10T06:45:00Z",
        "2024-03-10T07:00:00Z",
        "2024-03-10T07:15:00Z",
    ]


def test_new_york_fall_back_fixed_time_fires_only_in_the_first_pass() -> None:
    assert cron_fires("30 1 * * *", "America/New_York", "2024-11-02T12:00Z", 2) == [
        "2024-11-03T05:30:00Z",  # 01:30 EDT
        "2024-11-04T06:30:00Z",  # 01:30 EST the next day; not 06:30Z on the 3rd
    ]


def test_new_york_fall_back_quarter_hours_fire_every_15_real_minutes() -> None:
    # 01:00-01:45 EDT (05:00Z-05:45Z), then 01:00-01:45 EST again (06:00Z-06:45Z), then 02:00 EST
    assert cron_fires("*/15 * * * *", "America/New_York", "2024-11-03T04:50Z", 9) == every(
        15, "2024-11-03T05:00Z", 9
    )


def test_new_york_fall_back_hourly_fires_every_real_hour() -> None:
    assert cron_fires("0 * * * *", "America/New_York", "2024-11-03T03:30Z", 5) == every(
        60, "2024-11-03T04:00Z", 5
    )


def test_asking_from_inside_the_second_pass() -> None:
    # 06:05Z is 01:05 EST, the second time round: the fixed-hour schedule is done for the day
    assert cron_fires("*/15 * * * *", "America/New_York", "2024-11-03T06:05Z", 2) == [
        "2024-11-03T06:15:00Z",
        "2024-11-03T06:30:00Z",
    ]
    assert cron_fires("30 1 * * *", "America/New_York", "2024-11-03T06:05Z", 1) == ["2024-11-04T06:30:00Z"]


def test_berlin_spring_forward() -> None:
    assert cron_fires("30 2 * * *", "Europe/Berlin", "2024-03-29T12:00Z", 3) == [
        "2024-03-30T01:30:00Z",  # 02:30 CET
        "2024-03-31T01:00:00Z",  # 02:30 does not exist: 03:00 CEST
        "2024-04-01T00:30:00Z",  # 02:30 CEST
    ]
    assert cron_fires("*/15 * * * *", "Europe/Berlin", "2024-03-31T00:20Z", 4) == every(
        15, "2024-03-31T00:30Z", 4
    )


def test_berlin_fall_back() -> None:
    assert cron_fires("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00Z", 2) == [
        "2024-10-27T00:30:00Z",  # 02:30 CEST, the first pass only
        "2024-10-28T01:30:00Z",
    ]
    assert cron_fires("*/15 * * * *", "Europe/Berlin", "2024-10-26T23:50Z", 9) == every(
        15, "2024-10-27T00:00Z", 9
    )


def test_lord_howe_half_hour_fall_back_every_10_real_minutes() -> None:
    # 2024-04-07 02:00 +11:00 (15:00Z) becomes 01:30 +10:30: 01:30-01:50 happen twice
    assert cron_fires("*/10 * * * *", "Australia/Lord_Howe", "2024-04-06T14:20Z", 10) == every(
        10, "2024-04-06T14:30Z", 10
    )


def test_lord_howe_half_hour_spring_forward() -> None:
    # 2024-10-06 02:00 +10:30 (15:30Z) becomes 02:30 +11:00: 02:15 fires at 02:30, once
    assert cron_fires("15 2 * * *", "Australia/Lord_Howe", "2024-10-04T12:00Z", 3) == [
        "2024-10-04T15:45:00Z",  # 02:15 +10:30 on the 5th
        "2024-10-05T15:30:00Z",  # the gap end, 02:30 +11:00 on the 6th
        "2024-10-06T15:15:00Z",  # 02:15 +11:00 on the 7th
    ]
    assert cron_fires("*/10 * * * *", "Australia/Lord_Howe", "2024-10-05T15:05Z", 4) == [
        "2024-10-05T15:10:00Z",  # 01:40 +10:30
        "2024-10-05T15:20:00Z",  # 01:50 +10:30
        "2024-10-05T15:30:00Z",  # 02:00, 02:10, 02:20 and 02:30 share the gap end
        "2024-10-05T15:40:00Z",
    ]


def test_apia_skipped_day_still_gets_its_daily_tick() -> None:
    # 2011-12-29 23:59:59 -10:00 was followed by 2011-12-31 00:00:00 +14:00 (2011-12-30T10:00Z)
    got = fire_times(Trigger(cron="0 9 * * *", timezone="Pacific/Apia"), at("2011-12-28T12:00Z"), 5)
    assert iso(got) == [
        "2011-12-28T19:00:00Z",  # Dec 28 09:00 -10
        "2011-12-29T19:00:00Z",  # Dec 29 09:00 -10
        "2011-12-30T10:00:00Z",  # Dec 30's tick, at the first instant after the gap: Dec 31 00:00 +14
        "2011-12-30T19:00:00Z",  # Dec 31 09:00 +14
        "2011-12-31T19:00:00Z",  # Jan 1 09:00 +14
    ]


def test_apia_midnight_ticks_in_and_after_the_gap_share_one_fire() -> None:
    # Dec 30 00:00 does not exist and resolves to Dec 31 00:00, which is also Dec 31's own tick
    assert cron_fires("0 0 * * *", "Pacific/Apia", "2011-12-28T12:00Z", 3) == [
        "2011-12-29T10:00:00Z",
        "2011-12-30T10:00:00Z",
        "2011-12-31T10:00:00Z",
    ]


def test_every_second_through_both_changes() -> None:
    for zone_after, expected in [
        ("2024-11-03T05:59:58Z", ["2024-11-03T05:59:59Z", "2024-11-03T06:00:00Z", "2024-11-03T06:00:01Z"]),
        ("2024-03-10T06:59:58Z", ["2024-03-10T06:59:59Z", "2024-03-10T07:00:00Z", "2024-03-10T07:00:01Z"]),
    ]:
        assert cron_fires("* * * * * *", "America/New_York", zone_after, 3) == expected
    # the same without the every-second shortcut
    assert cron_fires("*/2 * * * * *", "America/New_York", "2024-11-03T05:59:57Z", 3) == [
        "2024-11-03T05:59:58Z",  # 01:59:58 EDT
        "2024-11-03T06:00:00Z",  # 01:00:00 EST, the second pass
        "2024-11-03T06:00:02Z",
    ]
    assert cron_fires("*/2 * * * * *", "America/New_York", "2024-03-10T06:59:57Z", 3) == [
        "2024-03-10T06:59:58Z",
        "2024-03-10T07:00:00Z",
        "2024-03-10T07:00:02Z",
    ]


@pytest.mark.parametrize(
    ("expr", "zone", "start", "croniter_says", "we_say"),
    [
        (
            "30 1 * * *",
            "America/New_York",
            "2024-11-02T12:00Z",
            ["2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z"],
            ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2024-10-26T12:00Z",
            ["2024-10-27T00:30:00Z", "2024-10-27T01:30:00Z"],
            ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
        ),
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2024-04-06T12:00Z",
            ["2024-04-06T14:45:00Z", "2024-04-06T15:15:00Z"],
            ["2024-04-06T14:45:00Z", "2024-04-07T15:15:00Z"],
        ),
    ],
)
def test_croniter_with_an_aware_start_fires_fixed_hours_twice_on_fall_back(
    expr: str, zone: str, start: str, croniter_says: list[str], we_say: list[str]
) -> None:
    it = croniter(expr, at(start).astimezone(ZoneInfo(zone)))
    assert iso([it.get_next(datetime) for _ in range(2)]) == croniter_says
    assert cron_fires(expr, zone, start, 2) == we_say


# ---- syntax -------------------------------------------------------------------------


def test_six_fields_have_seconds_first() -> None:
    assert cron_fires("0 */5 * * * *", "UTC", "2024-05-15T12:01:30Z", 2) == [
        "2024-05-15T12:05:00Z",
        "2024-05-15T12:10:00Z",
    ]
    assert cron_fires("*/10 * * * * *", "UTC", "2024-05-15T12:00:05Z", 3) == [
        "2024-05-15T12:00:10Z",
        "2024-05-15T12:00:20Z",
        "2024-05-15T12:00:30Z",
    ]
    assert cron_fires("*/10 * * * * *", "Europe/Berlin", "2024-05-15T12:00:05Z", 1) == [
        "2024-05-15T12:00:10Z"
    ]


def test_fire_times_are_strictly_after_and_whole_seconds() -> None:
    assert cron_fires("*/10 * * * * *", "UTC", "2024-05-15T12:00:10Z", 1) == ["2024-05-15T12:00:20Z"]
    got = next_fire(Trigger(cron="* * * * * *"), at("2024-05-15T12:00:10.999999Z"))
    assert got == at("2024-05-15T12:00:11Z")


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("@hourly", "2024-05-15T11:00:00Z"),
        ("@daily", "2024-05-16T00:00:00Z"),
        ("@midnight", "2024-05-16T00:00:00Z"),
        ("@weekly", "2024-05-19T00:00:00Z"),  # Sunday
        ("@monthly", "2024-06-01T00:00:00Z"),
        ("@yearly", "2025-01-01T00:00:00Z"),
        ("@ANNUALLY", "2025-01-01T00:00:00Z"),
    ],
)
def test_macros(expr: str, first: str) -> None:
    assert cron_fires(expr, "UTC", "2024-05-15T10:30Z", 1) == [first]


def test_daily_macro_follows_the_zone() -> None:
    assert cron_fires("@daily", "Europe/Berlin", "2024-05-15T10:30Z", 1) == ["2024-05-15T22:00:00Z"]


def test_names_for_days_and_months() -> None:
    # Friday 2024-05-17 10:00 CEST: the next weekday 09:00 is Monday
    assert cron_fires("0 9 * * MON-FRI", "Europe/Berlin", "2024-05-17T08:00Z", 2) == [
        "2024-05-20T07:00:00Z",
        "2024-05-21T07:00:00Z",
    ]
    assert cron_fires("0 0 1 jan,JUL *", "UTC", "2024-05-17T08:00Z", 2) == [
        "2024-07-01T00:00:00Z",
        "2025-01-01T00:00:00Z",
    ]


def test_last_day_of_month_and_nth_weekday() -> None:
    assert cron_fires("0 0 L * *", "UTC", "2024-02-10T00:00Z", 3) == [
        "2024-02-29T00:00:00Z",
        "2024-03-31T00:00:00Z",
        "2024-04-30T00:00:00Z",
    ]
    assert cron_fires("0 0 * * 5#3", "UTC", "2024-05-01T00:00Z", 2) == [
        "2024-05-17T00:00:00Z",
        "2024-06-21T00:00:00Z",
    ]


def test_validate_normalizes() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    t = validate(Trigger(cron="  0  9 * *   MON-FRI ", timezone="Europe/Berlin"))
    assert t.cron == "0 9 * * MON-FRI"
    assert validate(Trigger(cron="@Daily")).cron == "@daily"
    start = datetime(2024, 5, 1, 9, tzinfo=berlin)
    t = validate(Trigger(interval_s=30, start_at=start))
    assert (
        t.anchor == start and t.anchor.tzinfo is UTC and t.start_at is not None and t.start_at.tzinfo is UTC
    )
    assert t.interval_s == 30.0 and isinstance(t.interval_s, float)
    assert validate(t) == t


NAIVE = datetime(2024, 1, 1)
T0 = at("2024-01-01T00:00Z")


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (
            Trigger(cron="61 * * * *"),
            "cron: field 'minute' value 61 is out of range 0-59 in '61 \\* \\* \\* \\*'",
        ),
        (Trigger(cron="0 25 * * *"), "field 'hour' value 25 is out of range 0-23"),
        (Trigger(cron="61 * * * * *"), "field 'second' value 61 is out of range 0-59"),
        (Trigger(cron="0 0 32 * *"), "field 'day-of-month' value 32 is out of range 1-31"),
        (Trigger(cron="0 0 * 13 *"), "field 'month' value 13 is out of range 1-12"),
        (Trigger(cron="0 0 * * 8"), "field 'day-of-week' value 8 is out of range 0-7"),
        (Trigger(cron="*/0 * * * *"), "field 'minute' step '0' must be a whole number >= 1"),
        (Trigger(cron="1 2 3 4 5 6 7"), "cron: expected 5 fields, or 6 with seconds first, got 7"),
        (Trigger(cron="garbage"), "expected 5 fields, or 6 with seconds first, got 1 in 'garbage'"),
        (Trigger(cron="a b c d e"), "cron: field 'minute' 'A' is not a number 0-59 in 'a b c d e'"),
        (Trigger(cron="0 0 * * 5#6"), "field 'day-of-week' '5#6': the count after '#' must be 1-5, got 6"),
        (Trigger(cron="@reboot"), "cron: '@reboot' is not supported"),
        (Trigger(cron="  "), "cron: expression is empty"),
        (Trigger(cron="0 0 31 2 *"), "never fires"),
        (Trigger(cron="H * * * *"), "H and R are not supported"),
        (Trigger(cron="0 9 * * *", timezone="Mars/Olympus"), "timezone: unknown time zone 'Mars/Olympus'"),
        (Trigger(cron="0 9 * * *", timezone="localtime"), "timezone: unknown time zone 'localtime'"),
        (Trigger(interval_s=0, anchor=T0), "interval_s: must be > 0, got 0"),
        (Trigger(interval_s=-5, anchor=T0), "interval_s: must be > 0, got -5"),
        (Trigger(interval_s=math.inf, anchor=T0), "interval_s: must be a finite number"),
        (Trigger(interval_s=math.nan, anchor=T0), "interval_s: must be a finite number"),
        (Trigger(interval_s=60), "needs an anchor or a start_at"),
        (Trigger(cron="* * * * *", interval_s=60, anchor=T0), "not both"),
        (Trigger(), "set one of cron or interval_s"),
        (
            Trigger(cron="* * * * *", start_at=NAIVE),
            "start_at: naive datetime 2024-01-01T00:00:00 needs a time zone",
        ),
        (Trigger(interval_s=60, anchor=NAIVE), "anchor: naive datetime"),
        (Trigger(cron="* * * * *", start_at=T0, end_at=T0), "start_at .* must be before end_at"),
        (Trigger(cron="* * * * *", anchor=T0), "anchor: only interval triggers"),
    ],
)
def test_invalid_triggers_say_what_is_wrong(trigger: Trigger, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate(trigger)
    with pytest.raises(ScheduleError, match=message):
        next_fire(trigger, T0)


def test_schedule_error_is_a_domain_error_and_arguments_are_checked() -> None:
    assert issubclass(ScheduleError, DomainError)
    trigger = Trigger(cron="* * * * *")
    with pytest.raises(ScheduleError, match="after: naive datetime"):
        next_fire(trigger, NAIVE)
    with pytest.raises(ScheduleError, match="count: must be between 0 and 1000, got 1001"):
        fire_times(trigger, T0, 1001)
    with pytest.raises(ScheduleError, match="end: naive"):
        fires_between(trigger, T0, NAIVE, 10)
    assert len(fire_times(trigger, T0, 1000)) == 1000
    assert fire_times(trigger, T0, 0) == []


# ---- bounds -------------------------------------------------------------------------


def test_cron_bounds_are_inclusive() -> None:
    trigger = Trigger(cron="0 * * * *", start_at=at("2024-05-15T10:00Z"), end_at=at("2024-05-15T12:00Z"))
    assert iso(fire_times(trigger, at("2024-05-01T00:00Z"), 10)) == [
        "2024-05-15T10:00:00Z",
        "2024-05-15T11:00:00Z",
        "2024-05-15T12:00:00Z",
    ]
    assert next_fire(trigger, at("2024-05-15T12:00Z")) is None
    late_start = Trigger(cron="0 * * * *", start_at=at("2024-05-15T10:00:00.5Z"))
    assert next_fire(late_start, T0) == at("2024-05-15T11:00Z")


def test_fires_between_is_start_exclusive_end_inclusive_and_limited() -> None:
    trigger = Trigger(cron="*/15 * * * *", timezone="Europe/Berlin")
    got = fires_between(trigger, at("2024-05-15T10:00Z"), at("2024-05-15T11:00Z"), 100)
    assert iso(got) == every(15, "2024-05-15T10:15Z", 4)
    assert fires_between(trigger, at("2024-05-15T10:00Z"), at("2024-05-15T11:00Z"), 2) == got[:2]
    assert fires_between(trigger, at("2024-05-15T10:00Z"), at("2024-05-15T10:10Z"), 100) == []


def test_interval_ticks_count_from_the_anchor() -> None:
    trigger = Trigger(interval_s=90, anchor=T0)
    assert next_fire(trigger, T0 - timedelta(days=1)) == T0
    assert next_fire(trigger, T0) == T0 + timedelta(seconds=90)
    assert next_fire(trigger, T0 + timedelta(seconds=180)) == T0 + timedelta(seconds=270)
    assert next_fire(trigger, T0 + timedelta(seconds=179.999999)) == T0 + timedelta(seconds=180)


def test_interval_respects_start_and_end() -> None:
    off_grid = Trigger(interval_s=60, anchor=T0, start_at=T0 + timedelta(seconds=90))
    assert next_fire(off_grid, T0) == T0 + timedelta(seconds=120)
    on_grid = Trigger(interval_s=60, anchor=T0, start_at=T0 + timedelta(seconds=120))
    assert next_fire(on_grid, T0) == T0 + timedelta(seconds=120)
    from_start = Trigger(
        interval_s=60, start_at=T0 + timedelta(seconds=7), end_at=T0 + timedelta(seconds=127)
    )
    assert fire_times(from_start, T0, 10) == [T0 + timedelta(seconds=s) for s in (7, 67, 127)]


def test_interval_ticks_are_exact_multiples_without_drift() -> None:
    got = fire_times(Trigger(interval_s=0.1, anchor=T0), T0, 1000)
    assert got[-1] == T0 + timedelta(seconds=100)
    assert all(b - a == timedelta(milliseconds=100) for a, b in itertools.pairwise(got))


def test_interval_ignores_the_zone_and_its_dst() -> None:
    trigger = Trigger(interval_s=1800, timezone="America/New_York", anchor=at("2024-11-03T04:00Z"))
    assert iso(fire_times(trigger, at("2024-11-03T04:00Z"), 6)) == every(30, "2024-11-03T04:30Z", 6)


# ---- jitter and description ---------------------------------------------------------


def test_jitter_is_deterministic_in_range_and_varies_by_tick() -> None:
    tick = at("2024-05-15T10:00Z")
    values = [jitter_s("sched-1", tick + timedelta(minutes=k), 30.0) for k in range(200)]
    assert all(0.0 <= v < 30.0 for v in values)
    assert len(set(values)) == 200
    assert jitter_s("sched-1", tick, 30.0) == values[0]
    assert jitter_s("sched-1", tick.astimezone(ZoneInfo("Asia/Kolkata")), 30.0) == values[0]
    assert jitter_s("sched-2", tick, 30.0) != values[0]
    assert jitter_s("sched-1", tick, 0.0) == 0.0
    assert jitter_s("sched-1", tick, -1.0) == 0.0
    assert 0.0 <= jitter_s("sched-1", tick, 1e-300) < 1e-300


def test_describe() -> None:
    assert describe(Trigger(cron="0 9 * * MON-FRI", timezone="Europe/Berlin")) == (
        "cron '0 9 * * MON-FRI' in Europe/Berlin"
    )
    assert describe(Trigger(interval_s=90, anchor=T0, end_at=T0 + timedelta(days=1))) == (
        "every 90s from 2024-01-01T00:00:00Z, until 2024-01-02T00:00:00Z"
    )


# ---- properties ---------------------------------------------------------------------

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Kolkata",
    "UTC",
    "America/Sao_Paulo",
    "Pacific/Chatham",
    "Antarctica/Troll",  # a 2-hour change
]
EVERY_HOUR = ["*/15 * * * *", "0 * * * *", "*/10 * * * *", "5,35 * * * *", "@hourly", "0 */7 * * * *"]
# More than once an hour in restricted hours: these too fire in both passes of a repeated hour.
SUB_HOURLY = ["*/15 1-6 * * *", "*/30 1 * * *", "0,30 0-3 * * *", "*/20 0-2,22-23 * * *", "0 */30 1-3 * * *"]
BOTH_PASSES = EVERY_HOUR + SUB_HOURLY
FIXED_HOUR = [
    "30 2 * * *",
    "30 1 * * *",
    "15 2 * * *",
    "0 0 * * *",
    "0 9 * * *",
    "45 1,2,3 * * *",
    "0 0 * * 1-5",
    "0 3 * * SUN",
    "0 2 L * *",
    "30 23 * * *",
    "0 0 1-3 * * *",  # once an hour, in restricted hours
]
SPAN = (datetime(2010, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC))


@lru_cache
def transitions(zone: str) -> list[datetime]:
    """Every UTC-offset change in the zone in 2010-2030, found by stepping and bisecting."""
    tz = ZoneInfo(zone)
    found = []
    t, step = SPAN[0], timedelta(hours=6)
    while t < SPAN[1]:
        lo, hi = t, t + step
        if lo.astimezone(tz).utcoffset() != hi.astimezone(tz).utcoffset():
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid.astimezone(tz).utcoffset() == hi.astimezone(tz).utcoffset():
                    hi = mid
                else:
                    lo = mid
            found.append(hi)
        t += step
    return found


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    """Anywhere in 2010-2030, often within hours of a clock change, often on a round minute
    (where schedules fire, so `after` is often exactly a fire time)."""
    changes = transitions(zone)
    if changes and draw(st.booleans()):
        t = draw(st.sampled_from(changes)) + timedelta(seconds=draw(st.integers(-6 * 3600, 3 * 3600)))
    else:
        t = SPAN[0] + timedelta(seconds=draw(st.integers(0, int((SPAN[1] - SPAN[0]).total_seconds()))))
    unit = draw(st.sampled_from([1, 60, 300]))
    t -= timedelta(seconds=int(t.timestamp()) % unit)
    return t + timedelta(microseconds=draw(st.sampled_from([0, 0, 0, 1, 500_000])))


def wall(t: datetime, zone: ZoneInfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None, fold=0)


def offset(t: datetime, zone: ZoneInfo) -> timedelta:
    return t.astimezone(zone).utcoffset() or timedelta(0)


def is_gap_end(t: datetime, zone: ZoneInfo) -> bool:
    return offset(t, zone) > offset(t - timedelta(seconds=1), zone)


def resolve(naive: datetime, zone: ZoneInfo, both_passes: bool) -> list[datetime]:
    """The rules, read naively: the instants one wall-clock match fires at."""
    first = naive.replace(tzinfo=zone).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if wall(first, zone) == naive:  # exists, once or twice
        return sorted({first, second}) if both_passes else [first]
    t = min(first, second)  # skipped: walk to the first instant whose wall time is later
    while wall(t, zone) < naive:
        t += timedelta(minutes=1)
    while wall(t - timedelta(seconds=1), zone) > naive:
        t -= timedelta(seconds=1)
    return [t]


@settings(max_examples=120, deadline=None)
@given(data=st.data(), zone=st.sampled_from(ZONES), expr=st.sampled_from(BOTH_PASSES + FIXED_HOUR))
def test_successive_fires_increase_and_match_the_expression(
    data: st.DataObject, zone: str, expr: str
) -> None:
    tz = ZoneInfo(zone)
    trigger = Trigger(cron=expr, timezone=zone)
    after = data.draw(instants(zone))
    seen: list[datetime] = []
    for _ in range(50):
        fire = next_fire(trigger, after)
        assert fire is not None and fire > after and fire.tzinfo is UTC
        local = fire.astimezone(tz)
        if not croniter.match(expr, local.replace(tzinfo=None), second_at_beginning=True):
            # only a gap end may fire at a time the expression does not name, for a match inside the gap
            assert is_gap_end(fire, tz), (expr, zone, local)
            skipped = wall(fire - timedelta(seconds=1), tz)
            it = croniter(expr, skipped, second_at_beginning=True)
            assert it.get_next(datetime) < local.replace(tzinfo=None)
        if local.fold:  # the second time the clock shows this
            assert expr in BOTH_PASSES, f"{expr} fired in the second pass at {local}"
        seen.append(fire)
        after = fire
    assert seen == sorted(set(seen))


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    expr=st.sampled_from([*EVERY_HOUR[:5], *SUB_HOURLY, *FIXED_HOUR[:6]]),
)
def test_next_fire_is_the_earliest_instant_the_rules_give(data: st.DataObject, zone: str, expr: str) -> None:
    tz = ZoneInfo(zone)
    after = data.draw(instants(zone))
    every_hour = expr in BOTH_PASSES
    start = wall(after, tz) - timedelta(days=1)
    it = croniter(expr, start, second_at_beginning=True)
    expected: set[datetime] = set()
    while not any(t > after for t in expected):
        expected.update(resolve(it.get_next(datetime), tz, every_hour))
    # one more day of matches covers any fire that a later wall time gives earlier
    stop = wall(min(t for t in expected if t > after), tz) + timedelta(days=1)
    while (naive := it.get_next(datetime)) < stop:
        expected.update(resolve(naive, tz, every_hour))
    assert next_fire(Trigger(cron=expr, timezone=zone), after) == min(t for t in expected if t > after)


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    hour=st.sampled_from([0, 1, 2, 3, 9, 23]),
    minute=st.sampled_from([0, 15, 30, 45]),
)
def test_fixed_hour_daily_fires_once_per_existing_local_day(
    data: st.DataObject, zone: str, hour: int, minute: int
) -> None:
    tz = ZoneInfo(zone)
    after = data.draw(instants(zone))
    got = fire_times(Trigger(cron=f"{minute} {hour} * * *", timezone=zone), after, 30)
    first_day: date = wall(after, tz).date() - timedelta(days=1)
    ticks = [datetime.combine(first_day + timedelta(days=d), datetime.min.time()) for d in range(40)]
    ticks = [t.replace(hour=hour, minute=minute) for t in ticks]
    expected = sorted({resolve(t, tz, False)[0] for t in ticks})
    assert got == [t for t in expected if t > after][:30]
    for tick in ticks:
        instant = tick.replace(tzinfo=tz).astimezone(UTC)
        if wall(instant, tz) == tick and got[0] <= instant <= got[-1]:  # the day has this time
            assert got.count(instant) == 1


@pytest.mark.parametrize("zone", ZONES)
def test_around_each_clock_change_every_fire_follows_from_the_one_before(zone: str) -> None:
    """Exhaustive near the changes: asking at, just before and just after every fire time."""
    tz = ZoneInfo(zone)
    changes = [t for t in transitions(zone) if t.year in (2011, 2024)] or [at("2024-03-10T07:00Z")]
    for change, expr in itertools.product(changes, [*BOTH_PASSES, "30 1 * * *", "15 2 * * *", "0 0 * * *"]):
        every_hour = expr in BOTH_PASSES
        it = croniter(expr, wall(change, tz) - timedelta(days=2), second_at_beginning=True)
        expected: set[datetime] = set()
        while (naive := it.get_next(datetime)) < wall(change, tz) + timedelta(days=3):
            expected.update(resolve(naive, tz, every_hour))
        trigger = Trigger(cron=expr, timezone=zone)
        for fire in sorted(t for t in expected if abs(t - change) < timedelta(hours=4)):
            for after in (fire - timedelta(seconds=1), fire, fire + timedelta(microseconds=1)):
                assert next_fire(trigger, after) == min(t for t in expected if t > after), (expr, after)
