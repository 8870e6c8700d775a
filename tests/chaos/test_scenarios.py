"""The full chaos suite (`./dev chaos`): one fault per scenario on the 3-node fleet. Skipped
in the default run, which has the smoke (test_smoke.py) instead."""

from __future__ import annotations

import os

import pytest

from tests.chaos import scenarios
from tests.chaos.fleet import Fleet

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("JOBSTREAM_CHAOS") != "full", reason="the full chaos suite: ./dev chaos"
    ),
    pytest.mark.timeout(420),
]


@pytest.mark.parametrize("name", sorted(scenarios.FAULTS))
def test_fault(fleet: Fleet, name: str) -> None:
    report = scenarios.run(fleet, name, scenarios.FAULTS[name])
    print(f"\n{report.line()}")
    with open(fleet.tmp.parent / "chaos-report.txt", "a") as out:
        out.write(report.line() + "\n")


@pytest.mark.parametrize("fleet", [True], indirect=True, ids=["proxied"])
@pytest.mark.parametrize("name", sorted(scenarios.PARTITIONS))
def test_partition(fleet: Fleet, name: str) -> None:
    report = scenarios.run(fleet, name, scenarios.PARTITIONS[name])
    print(f"\n{report.line()}")
    with open(fleet.tmp.parent / "chaos-report.txt", "a") as out:
        out.write(report.line() + "\n")
