"""When schedules fire: pure functions from a trigger and an instant to the fire times after it.

Cron fields are matched against naive local wall-clock time (events/cron.py), and each match
is mapped to real instants here with zoneinfo. The zone is never handed to a cron library:
croniter, for one, fires fixed-hour schedules twice when clocks fall back (its issue #56) and
has had zone bugs of its own (#258, Australia/Lord_Howe). The rules, in wall-clock terms:

- a local time that exists once fires at that instant;
- a local time skipped by a spring-forward gap fires at the first instant after the gap, and
  all matches inside one gap share that single fire;
- a local time that happens twice fires in both passes when the schedule fires more than once
  an hour (so "*/15 1-6 * * *" keeps firing every 15 real minutes) or its hour field names
  every hour (so "0 * * * *" fires every real hour); otherwise only in the first pass.

Fire times are aware UTC datetimes, strictly after the `after` asked about; cron fire times are
whole seconds. A fire exactly at start_at or at end_at counts (both bounds are inclusive).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from events.cron import Cron, ScheduleError, parse

__all__ = [
    "ScheduleError",
    "Trigger",
    "describe",
    "fire_times",
    "fires_between",
    "jitter_s",
    "next_fire",
    "validate",
]

MAX_FIRE_TIMES = 1000
_FIXED_ZONE = re.compile(r"(Etc/.+|UTC|UCT|GMT.*|Greenwich|Universal|Zulu)")
# Longer than any fall-back in the tz database (Antarctica/Troll's 2 h is the largest in use).
_LOOKAHEAD = timedelta(hours=3)
_SECOND = timedelta(seconds=1)
_US = timedelta(microseconds=1)
_PROBE_FROM = datetime(2000, 1, 1)


@dataclass(frozen=True)
class Trigger:
    """Exactly one of `cron` (in `timezone`) or `interval_s` (elapsed time from `anchor`)."""

    cron: str | None = None
    interval_s: float | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    # Interval ticks are anchor + k * interval_s for k >= 0; defaults to start_at.
    anchor: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    trigger: Trigger  # normalized
    zone: tzinfo
    fixed: timedelta | None  # the zone's offset when it never changes: no DST work needed
    cron: Cron | None
    both_passes: bool  # fires in both passes of a repeated hour (see the module docstring)
    every_second: bool  # fires each real second whatever the zone does: no matching needed
    step_us: int


def validate(trigger: Trigger) -> Trigger:
    """Raise ScheduleError saying what is wrong, or return the trigger normalized:
    datetimes in UTC, the interval anchor filled in, cron whitespace collapsed."""
    return _plan(trigger).trigger


def next_fire(trigger: Trigger, after: datetime) -> datetime | None:
    """The first fire time strictly after `after`, or None once past end_at."""
    plan = _plan(trigger)
    _check_aware("after", after)
    t = plan.trigger
    if t.start_at is not None and after < t.start_at:
        after = t.start_at - _US  # so that a fire exactly at start_at counts
    try:
        if plan.every_second:  # gaps and repeats included, each real second is a fire
            fire = after.astimezone(UTC).replace(microsecond=0) + _SECOND
        elif plan.cron is not None:
            fire = _next_cron(plan, after)
        else:
            fire = _next_interval(plan, after)
    except (OverflowError, _Exhausted):  # past year 9999
        return None
    if t.end_at is not None and fire > t.end_at:
        return None
    return fire


def fire_times(trigger: Trigger, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire times after `after`, fewer if end_at comes first."""
    if not 0 <= count <= MAX_FIRE_TIMES:
        raise ScheduleError(f"count: must be between 0 and {MAX_FIRE_TIMES}, got {count}")
    return fires_between(trigger, after, datetime.max.replace(tzinfo=UTC), count)


def fires_between(trigger: Trigger, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """Fire times t with start < t <= end, oldest first, at most `limit` of them."""
    _check_aware("end", end)
    if limit < 0:
        raise ScheduleError(f"limit: must be >= 0, got {limit}")
    out: list[datetime] = []
    cursor = start
    while len(out) < limit:
        fire = next_fire(trigger, cursor)
        if fire is None or fire > end:
            break
        out.append(fire)
        cursor = fire
    return out


def jitter_s(schedule_id: str, tick: datetime, jitter_s: float) -> float:
    """A stable offset in [0, jitter_s) that spreads schedules sharing a tick; every process
    computes the same one, so whichever scheduler handles the tick fires it at the same time."""
    if not jitter_s > 0:
        return 0.0
    if not math.isfinite(jitter_s):
        raise ScheduleError(f"jitter_s: must be finite, got {jitter_s}")
    _check_aware("tick", tick)
    key = f"{schedule_id}\n{tick.astimezone(UTC).isoformat()}".encode()
    unit = (int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 11) / 2**53  # [0, 1)
    return min(unit * jitter_s, math.nextafter(jitter_s, 0.0))


def describe(trigger: Trigger) -> str:
    t = validate(trigger)
    if t.cron is not None:
        text = f"cron {t.cron!r} in {t.timezone}"
    else:
        assert t.anchor is not None
        text = f"every {t.interval_s:g}s from {_iso(t.anchor)}"
    if t.start_at is not None and t.start_at != t.anchor:
        text += f", from {_iso(t.start_at)}"
    if t.end_at is not None:
        text += f", until {_iso(t.end_at)}"
    return text


# ---- validation ---------------------------------------------------------------------


@lru_cache(maxsize=16384)
def _plan(trigger: Trigger) -> _Plan:
    t = trigger
    start, end, anchor = (_utc(name, getattr(t, name)) for name in ("start_at", "end_at", "anchor"))
    if start is not None and end is not None and start >= end:
        raise ScheduleError(f"start_at {_iso(start)} must be before end_at {_iso(end)}")
    zone = _zone(t.timezone)
    if t.cron is not None and t.interval_s is not None:
        raise ScheduleError("trigger: set one of cron or interval_s, not both")
    if t.cron is not None:
        if anchor is not None:
            raise ScheduleError("anchor: only interval triggers have one; cron fires by the clock")
        cron = parse(t.cron)
        fixed = _offset(_PROBE_FROM.replace(tzinfo=zone)) if _fixed_zone(zone) else None
        norm = replace(t, cron=cron.text, start_at=start, end_at=end)
        both = cron.every_hour or cron.per_hour > 1
        return _Plan(norm, zone, fixed, cron, both, cron.every_second, 0)
    seconds = t.interval_s
    if seconds is None:
        raise ScheduleError("trigger: set one of cron or interval_s")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ScheduleError(f"interval_s: must be a finite number of seconds, got {seconds!r}")
    if seconds <= 0:
        raise ScheduleError(f"interval_s: must be > 0, got {seconds!r}")
    step_us = round(seconds * 1_000_000)  # ticks are exact multiples of whole microseconds
    if step_us < 1:
        raise ScheduleError(f"interval_s: must be at least one microsecond, got {seconds!r}")
    anchor = anchor or start
    if anchor is None:
        raise ScheduleError("interval_s: needs an anchor or a start_at to count ticks from")
    norm = replace(t, interval_s=float(seconds), start_at=start, end_at=end, anchor=anchor)
    return _Plan(norm, zone, None, None, False, False, step_us)


@lru_cache(maxsize=1024)
def _zone(name: str) -> tzinfo:
    # "localtime" would be whatever the host is set to: processes could disagree.
    if not isinstance(name, str) or name.lower() in ("", "localtime", "posixrules"):
        raise ScheduleError(f"timezone: unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"timezone: unknown time zone {name!r}") from None


def _fixed_zone(zone: tzinfo) -> bool:
    return zone is UTC or bool(_FIXED_ZONE.fullmatch(getattr(zone, "key", "") or ""))


def _utc(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    _check_aware(name, value)
    return value.astimezone(UTC)


def _check_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise ScheduleError(f"{name}: expected a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ScheduleError(f"{name}: naive datetime {value.isoformat()} needs a time zone")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---- computing ----------------------------------------------------------------------


def _next_interval(plan: _Plan, after: datetime) -> datetime:
    anchor = plan.trigger.anchor
    assert anchor is not None
    k = max(0, (after - anchor) // _US // plan.step_us + 1)
    return anchor + timedelta(microseconds=k * plan.step_us)


def _next_cron(plan: _Plan, after: datetime) -> datetime:
    """The earliest instant > after of all the instants the wall-clock matches map to.

    Matches come in wall-clock order, and their first-pass (or gap-end) instants rise with
    them; a second-pass instant is never earlier than its first. So the answer is the first
    match whose first instant is > after, unless the second pass of an earlier match beats it.
    """
    cron = plan.cron
    assert cron is not None
    if plan.fixed is not None:
        wall = after.astimezone(UTC).replace(tzinfo=None, microsecond=0) + plan.fixed
        return (_next_match(cron, wall) - plan.fixed).replace(tzinfo=UTC)
    zone = plan.zone
    local = after.astimezone(zone)
    floor = local.replace(tzinfo=None, microsecond=0, fold=0)
    cursor = floor
    if plan.both_passes:
        later = _offset((after + _LOOKAHEAD).astimezone(zone))
        if later < _offset(local):
            # Clocks fall back soon: wall times a little before `floor` come round again after
            # `after`, from the moment of the change on. Start looking there.
            change = _transition(after, after + _LOOKAHEAD, zone)
            cursor = min(floor, (change + later).replace(tzinfo=None) - _SECOND)
    best: datetime | None = None
    while True:
        match = _next_match(cron, cursor)
        wall = match.replace(tzinfo=UTC)  # wall-clock reading, as a value offsets subtract from
        early = _offset(match.replace(tzinfo=zone))
        late = _offset(match.replace(tzinfo=zone, fold=1))
        second: datetime | None = None
        if early == late:
            first = wall - early
        elif early > late:  # the clock shows this time twice
            first = wall - early
            if plan.both_passes:
                second = wall - late
        else:  # the clock skips this time: fire when the gap ends
            first = _transition(wall - late, wall - early, zone)
        if best is not None and first >= best:
            return best
        if first > after:
            return first
        if second is not None and second > after and (best is None or second < best):
            best = second
        if match <= floor:
            cursor = floor
        elif early > late:  # `after` is in the second pass: skip to where the repeat ends
            end = _transition(first, wall - late, zone) + early
            cursor = end.replace(tzinfo=None) - _SECOND
        elif early < late:  # every match in this gap fires at `first`, which has passed
            cursor = (first + late).replace(tzinfo=None)
        else:
            cursor = match


class _Exhausted(Exception):
    """No wall-clock time before year 10000 matches."""


def _next_match(cron: Cron, wall: datetime) -> datetime:
    match = cron.next_after(wall)
    if match is None:
        raise _Exhausted
    return match


def _transition(lo: datetime, hi: datetime, zone: tzinfo) -> datetime:
    """The first whole second in (lo, hi] at hi's UTC offset, lo being at another offset."""
    target = _offset(hi.astimezone(zone))
    lo_s, hi_s = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(datetime.fromtimestamp(mid, zone)) == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def _offset(value: datetime) -> timedelta:
    offset = value.utcoffset()
    assert offset is not None
    return offset
