"""Chaos smoke (runs in `./dev test`, in about a minute): SIGKILL of the node leading EVENTS,
twice, under a submitting load and two schedules, on a 3-node cluster with two dispatchers
and two schedulers. What must hold afterwards is `scenarios.check` (and, at teardown, a clean
`jobstream audit verify`)."""

from __future__ import annotations

import pytest

from events.streams import EVENTS_STREAM
from tests.chaos import scenarios
from tests.chaos.fleet import Fleet

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_killing_the_events_leader_twice_loses_and_doubles_nothing(fleet: Fleet) -> None:
    fault = scenarios.repeatedly(scenarios.kill_leader_of(EVENTS_STREAM), times=2, gap_s=6.0)
    report = scenarios.run(fleet, "smoke", fault, jobs=50)
    print(f"\n{report.line()}")
