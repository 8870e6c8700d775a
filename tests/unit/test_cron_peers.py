"""Fire times next to a respected peer's published DST vectors (cronsim's Europe/Riga cases).

Riga in 2021: clocks go from 02:59 +02:00 to 04:00 +03:00 on 28 March and from 03:59 +03:00
back to 03:00 +02:00 on 31 October. Where our README's rule and the peer agree, the instants
must match exactly; the two cases where we differ on purpose are pinned with the reason.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from events.firetimes import Trigger, fire_times

RIGA = ZoneInfo("Europe/Riga")


def fires(expr: str, now: datetime, count: int) -> list[str]:
    return [
        t.astimezone(RIGA).isoformat()
        for t in fire_times(Trigger(cron=expr, timezone="Europe/Riga"), now, count)
    ]


def riga(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=RIGA)


AGREED = [
    ("0 * * * *", riga(2021, 3, 28, 1, 30), ["2021-03-28T02:00:00+02:00", "2021-03-28T04:00:00+03:00"]),
    (
        "0 * * * *",
        riga(2021, 10, 31, 1, 30),
        [
            "2021-10-31T02:00:00+03:00",
            "2021-10-31T03:00:00+03:00",
            "2021-10-31T03:00:00+02:00",
            "2021-10-31T04:00:00+02:00",
        ],
    ),
    (
        "*/30 * * * *",
        riga(2021, 3, 28, 2, 10),
        ["2021-03-28T02:30:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-28T04:30:00+03:00"],
    ),
    (
        "*/30 * * * *",
        riga(2021, 10, 31, 2, 10),
        [
            "2021-10-31T02:30:00+03:00",
            "2021-10-31T03:00:00+03:00",
            "2021-10-31T03:30:00+03:00",
            "2021-10-31T03:00:00+02:00",
            "2021-10-31T03:30:00+02:00",
            "2021-10-31T04:00:00+02:00",
        ],
    ),
    ("*/15 * * * *", riga(2021, 3, 28, 2, 40), ["2021-03-28T02:45:00+02:00", "2021-03-28T04:00:00+03:00"]),
    (
        "0 */2 * * *",
        riga(2021, 3, 28, 1, 30),
        ["2021-03-28T02:00:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-28T06:00:00+03:00"],
    ),
    (
        "0 */2 * * *",
        riga(2021, 10, 31, 1, 30),
        ["2021-10-31T02:00:00+03:00", "2021-10-31T04:00:00+02:00", "2021-10-31T06:00:00+02:00"],
    ),
    ("30 */2 * * *", riga(2021, 3, 28, 1, 30), ["2021-03-28T02:30:00+02:00", "2021-03-28T04:30:00+03:00"]),
    ("30 */2 * * *", riga(2021, 10, 31, 1, 30), ["2021-10-31T02:30:00+03:00", "2021-10-31T04:30:00+02:00"]),
    (
        "0 1,2,3,4,5 * * *",
        riga(2021, 3, 28, 1, 30),
        ["2021-03-28T02:00:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-28T05:00:00+03:00"],
    ),
    (
        "0 1,2,3,4,5 * * *",
        riga(2021, 10, 31, 1, 30),
        ["2021-10-31T02:00:00+03:00", "2021-10-31T03:00:00+03:00", "2021-10-31T04:00:00+02:00"],
    ),
    (
        "30 1,2,3,4,5 * * *",
        riga(2021, 3, 28, 1, 30),
        ["2021-03-28T02:30:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-28T04:30:00+03:00"],
    ),
    (
        "30 1,2,3,4,5 * * *",
        riga(2021, 10, 31, 1, 30),
        ["2021-10-31T02:30:00+03:00", "2021-10-31T03:30:00+03:00", "2021-10-31T04:30:00+02:00"],
    ),
    ("0 2 * * *", riga(2021, 3, 28, 1, 30), ["2021-03-28T02:00:00+02:00", "2021-03-29T02:00:00+03:00"]),
    ("0 2 * * *", riga(2021, 10, 31, 1, 30), ["2021-10-31T02:00:00+03:00", "2021-11-01T02:00:00+02:00"]),
    (
        "0 3 * * *",
        riga(2021, 3, 27, 1, 30),
        ["2021-03-27T03:00:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-29T03:00:00+03:00"],
    ),
    ("0 3 * * *", riga(2021, 10, 31, 1, 30), ["2021-10-31T03:00:00+03:00", "2021-11-01T03:00:00+02:00"]),
    (
        "0 4 * * *",
        riga(2021, 10, 30, 1, 30),
        ["2021-10-30T04:00:00+03:00", "2021-10-31T04:00:00+02:00", "2021-11-01T04:00:00+02:00"],
    ),
    (
        "0 1,3,5,7,9,11,13,15,17,19,21,23 * * *",
        riga(2021, 10, 31, 0, 30),
        ["2021-10-31T01:00:00+03:00", "2021-10-31T03:00:00+03:00", "2021-10-31T05:00:00+02:00"],
    ),
    (
        "0 1-5 * * *",
        riga(2021, 10, 31, 1, 30),
        ["2021-10-31T02:00:00+03:00", "2021-10-31T03:00:00+03:00", "2021-10-31T04:00:00+02:00"],
    ),
    (
        "15 3 * * *",
        riga(2021, 3, 27, 0, 0),
        ["2021-03-27T03:15:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-29T03:15:00+03:00"],
    ),
    (
        "15 3 * * *",
        riga(2021, 10, 30, 0, 0),
        ["2021-10-30T03:15:00+03:00", "2021-10-31T03:15:00+03:00", "2021-11-01T03:15:00+02:00"],
    ),
    (
        "* * * * *",
        riga(2021, 10, 31, 3, 58),
        ["2021-10-31T03:59:00+03:00", "2021-10-31T03:00:00+02:00", "2021-10-31T03:01:00+02:00"],
    ),
    # More than once an hour in restricted hours keeps its cadence through the repeat.
    (
        "* 1-6 * * *",
        riga(2021, 10, 31, 3, 58),
        ["2021-10-31T03:59:00+03:00", "2021-10-31T03:00:00+02:00", "2021-10-31T03:01:00+02:00"],
    ),
    ("* 1-6 * * *", riga(2021, 3, 28, 2, 58), ["2021-03-28T02:59:00+02:00", "2021-03-28T04:00:00+03:00"]),
]


@pytest.mark.parametrize(("expr", "now", "expected"), AGREED)
def test_agrees_with_the_peer(expr: str, now: datetime, expected: list[str]) -> None:
    assert fires(expr, now, len(expected)) == expected


def test_differs_on_purpose_for_every_third_hour() -> None:
    # cronsim fires 03:00 in both passes; ours fires a schedule that fires at most once an
    # hour once, in the first pass, unless its hour field names every hour.
    assert fires("0 */3 * * *", riga(2021, 10, 31, 1, 30), 2) == [
        "2021-10-31T03:00:00+03:00",
        "2021-10-31T06:00:00+02:00",
    ]


def test_differs_on_purpose_for_every_hour_enumerated() -> None:
    # cronsim treats a list of all 24 hours as a fixed-hour schedule (03:00 once); an hour
    # list naming every hour behaves like * here, so it fires every real hour.
    every = ",".join(str(h) for h in range(24))
    assert fires(f"0 {every} * * *", riga(2021, 10, 31, 1, 30), 4) == fires(
        "0 * * * *", riga(2021, 10, 31, 1, 30), 4
    )
