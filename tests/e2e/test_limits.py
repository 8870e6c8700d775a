"""Concurrency limits end to end: real processes, limits read back from the jobs' own histories."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.system import System, shell_job

pytestmark = pytest.mark.slow


def most_at_once(jobs: list[dict[str, Any]]) -> int:
    """The most jobs whose [started_at, finished_at] intervals overlap at one instant."""
    points = []
    for job in jobs:
        points.append((datetime.fromisoformat(job["started_at"]), 1))
        points.append((datetime.fromisoformat(job["finished_at"]), -1))
    running = most = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start at a tie
        running += delta
        most = max(most, running)
    return most


def submit(system: System, jobs: list[dict[str, Any]]) -> list[str]:
    with system.client() as c:
        r = c.post("/jobs/batch", json={"jobs": jobs})
        assert r.status_code == 201, r.text
        return r.json()["ids"]  # type: ignore[no-any-return]


def wait_reason(system: System, ids: list[str], needle: str) -> dict[str, Any]:
    """Some job of `ids` seen pending with a reason containing `needle`."""
    seen: dict[str, Any] = {}

    def found() -> bool:
        for job_id in ids:
            job = system.job(job_id)
            if job["status"] == "pending" and needle in (job["pending_reason"] or ""):
                seen.update(job)
                return True
        return False

    system.wait(found, timeout=10, what=f"a pending job with reason {needle!r}")
    return seen


def test_key_and_name_limits_hold_jobs_pending_and_run_them_all(system: System) -> None:
    # 2 workers x 4 slots: capacity is not what keeps these jobs waiting.
    keyed = submit(
        system,
        [shell_job("sleep 1", name="keyed", concurrency_key="k", concurrency_limit=2) for _ in range(6)],
    )
    named = submit(system, [shell_job("sleep 1", name="solo", name_limit=1) for _ in range(3)])
    waiting = wait_reason(system, keyed, "concurrency limit: 2 of 2 jobs with key 'k' running")
    assert waiting["spec"]["concurrency_key"] == "k" and waiting["spec"]["concurrency_limit"] == 2
    wait_reason(system, named, "concurrency limit: 1 of 1 jobs named 'solo' running")

    done = system.wait_terminal(keyed + named, timeout=30)
    assert Counter(j["status"] for j in done.values()) == {"succeeded": 9}
    assert most_at_once([done[i] for i in keyed]) == 2
    assert most_at_once([done[i] for i in named]) == 1
    with system.client() as c:
        types = [e["type"] for e in c.get(f"/jobs/{waiting['id']}/events").json()]
    assert types[:3] == ["submitted", "held", "dispatched"] and types.count("held") == 1, types


def test_domain_limit_of_the_dispatcher(system: System) -> None:
    system.stop("dispatcher")
    system.start_dispatcher("dispatcher-limited", "--max-running-per-domain", "3")
    ids = submit(system, [shell_job("sleep 1", name=f"d{i}") for i in range(7)])
    wait_reason(system, ids, "domain limit: 3 of 3 jobs running in ")
    done = system.wait_terminal(ids, timeout=30)
    assert Counter(j["status"] for j in done.values()) == {"succeeded": 7}
    assert most_at_once(list(done.values())) == 3
