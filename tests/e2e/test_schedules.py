"""Schedules end to end: real scheduler, dispatcher and worker processes on a real nats-server.

One system serves the whole module (each test has its own schedules); tests that stop or
kill schedulers put one back before they end.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.streams import LEASE_TTL_S
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port
from tests.e2e.system import System

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp: Path = tmp_path_factory.mktemp("schedules")
    nats = NatsServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()
    sys_ = System(tmp, nats)
    try:
        sys_.start_api()
        sys_.start_dispatcher()
        sys_._spawn("scheduler", "scheduler")
        sys_.start_worker("w1", "--max-concurrency", "8", "--grace-s", "5")
        sys_.start_worker("w2", "--max-concurrency", "8", "--grace-s", "5")
        yield sys_
    finally:
        sys_.shutdown()
        nats.stop()


def every(name: str, interval_s: float, script: str = "true", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "interval_s": interval_s,
        "job": {"name": name, "executor": {"type": "shell", "script": script}},
        **extra,
    }


def create(system: System, body: dict[str, Any]) -> dict[str, Any]:
    with system.client() as c:
        r = c.post("/schedules", json=body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def runs(system: System, sid: str) -> list[dict[str, Any]]:
    """The whole tick history, oldest first."""
    out: list[dict[str, Any]] = []
    before = None
    with system.client() as c:
        while True:
            page = c.get(
                f"/schedules/{sid}/runs", params={"limit": 500, **({"before": before} if before else {})}
            )
            assert page.status_code == 200, page.text
            out += page.json()["items"]
            before = page.json()["next_before"]
            if before is None:
                return out[::-1]


def schedule(system: System, sid: str) -> dict[str, Any]:
    with system.client() as c:
        return c.get(f"/schedules/{sid}").json()  # type: ignore[no-any-return]


def pause(system: System, sid: str) -> None:
    with system.client() as c:
        assert c.post(f"/schedules/{sid}/pause").status_code == 200


def jobs_of(system: System, runs_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [system.job(r["job_id"]) for r in runs_ if r["outcome"] == "fired"]


def intervals(jobs: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"]))
        for j in jobs
        if j.get("started_at") and j.get("finished_at")
    ]


def max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda p: (p[0], p[1]))
    best = now = 0
    for _, delta in points:
        now += delta
        best = max(best, now)
    return best


def test_interval_schedule_fires_on_time_and_jobs_run(system: System) -> None:
    s = create(system, every("tick-1s", 1.0))
    time.sleep(4.5)
    pause(system, s["id"])
    history = runs(system, s["id"])
    fired = [r for r in history if r["outcome"] == "fired"]
    assert 3 <= len(fired) <= 6, history
    ticks = [datetime.fromisoformat(r["tick"]) for r in fired]
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    assert all(r["reason"] == "tick" and r["lateness_s"] < 1.0 for r in fired), fired
    done = system.wait_terminal([r["job_id"] for r in fired], timeout=30)
    assert {j["status"] for j in done.values()} == {"succeeded"}
    assert all(j["schedule_id"] == s["id"] and j["tick"] for j in done.values())


def test_cron_with_seconds_first(system: System) -> None:
    body = every("cron-2s", 1.0)
    del body["interval_s"]
    s = create(system, {**body, "cron": "*/2 * * * * *"})
    time.sleep(5.2)
    pause(system, s["id"])
    fired = [r for r in runs(system, s["id"]) if r["outcome"] == "fired"]
    assert len(fired) >= 2
    assert all(datetime.fromisoformat(r["tick"]).second % 2 == 0 for r in fired)


def test_overlap_skip_never_runs_two_at_once(system: System) -> None:
    s = create(system, every("skip", 1.0, "sleep 2.2", overlap_policy="skip"))
    time.sleep(6.5)
    pause(system, s["id"])
    history = runs(system, s["id"])
    outcomes = Counter(r["outcome"] for r in history)
    assert outcomes["fired"] >= 2 and outcomes["skipped"] >= 2, history
    assert all("overlap" in r["reason"] for r in history if r["outcome"] == "skipped")
    jobs = jobs_of(system, history)
    system.wait_terminal([j["id"] for j in jobs], timeout=30)
    assert max_overlap(intervals(jobs_of(system, history))) == 1


def test_overlap_queue_runs_every_tick_one_after_another(system: System) -> None:
    s = create(system, every("queue", 1.0, "sleep 1.5", overlap_policy="queue"))
    time.sleep(4.5)
    # Stop new ticks (a paused schedule would also hold its queue) and let the queue drain.
    with system.client() as c:
        assert c.patch(f"/schedules/{s['id']}", json={"interval_s": 3600}).status_code == 200
    history = runs(system, s["id"])
    queued = [r["tick"] for r in history if r["outcome"] == "queued"]
    assert queued, history
    system.wait(lambda: not schedule(system, s["id"])["waiting"], timeout=30, what="queue drained")
    pause(system, s["id"])
    history = runs(system, s["id"])
    fired = [r for r in history if r["outcome"] == "fired"]
    assert set(queued) <= {r["tick"] for r in fired}
    assert [r["tick"] for r in fired] == sorted(r["tick"] for r in fired)  # in order
    system.wait_terminal([r["job_id"] for r in fired], timeout=30)
    assert max_overlap(intervals(jobs_of(system, history))) == 1


def test_overlap_buffer_one_keeps_at_most_one_waiting(system: System) -> None:
    s = create(system, every("buffer", 0.5, "sleep 2", overlap_policy="buffer_one"))
    seen = 0
    for _ in range(10):
        time.sleep(0.4)
        seen = max(seen, len(schedule(system, s["id"])["waiting"]))
    pause(system, s["id"])
    history = runs(system, s["id"])
    assert seen == 1
    assert any(r["outcome"] == "skipped" and "buffer" in r["reason"] for r in history), history
    assert any(r["outcome"] == "fired" and r["reason"] == "queued" for r in history), history


def test_overlap_cancel_other_cancels_the_running_one(system: System) -> None:
    s = create(system, every("canceller", 1.5, "sleep 30", overlap_policy="cancel_other"))
    time.sleep(5.0)
    pause(system, s["id"])
    fired = [r for r in runs(system, s["id"]) if r["outcome"] == "fired"]
    assert len(fired) >= 3
    done = system.wait_terminal([r["job_id"] for r in fired[:-1]], timeout=20)
    assert {j["status"] for j in done.values()} == {"cancelled"}
    with system.client() as c:
        c.post(f"/jobs/{fired[-1]['job_id']}/cancel")


def test_overlap_allow_runs_concurrently(system: System) -> None:
    s = create(system, every("allow", 0.5, "sleep 2", overlap_policy="allow"))
    time.sleep(3.0)
    pause(system, s["id"])
    history = runs(system, s["id"])
    assert {r["outcome"] for r in history} == {"fired"}
    system.wait_terminal([r["job_id"] for r in history], timeout=30)
    assert max_overlap(intervals(jobs_of(system, history))) >= 2


def test_start_and_end_bounds(system: System) -> None:
    now = datetime.now(UTC)
    start, end = now + timedelta(seconds=1.5), now + timedelta(seconds=4)
    s = create(system, every("bounded", 1.0, start_at=start.isoformat(), end_at=end.isoformat()))
    time.sleep(6.0)
    fired = [r for r in runs(system, s["id"]) if r["outcome"] == "fired"]
    ticks = [datetime.fromisoformat(r["tick"]) for r in fired]
    assert ticks and all(start <= t <= end for t in ticks), ticks
    assert len(ticks) == 3  # start, +1 s, +2 s (+3 s would pass end_at... by 0.5 s)
    assert schedule(system, s["id"])["status"] == "ended"


def test_pause_stops_firing_and_resume_goes_on_from_now(system: System) -> None:
    s = create(system, every("paused", 0.5))
    time.sleep(1.5)
    pause(system, s["id"])
    paused_at = datetime.now(UTC)
    count = len(runs(system, s["id"]))
    time.sleep(2.0)
    assert len(runs(system, s["id"])) == count
    with system.client() as c:
        assert c.post(f"/schedules/{s['id']}/resume").status_code == 200
    time.sleep(1.5)
    pause(system, s["id"])
    later = runs(system, s["id"])[count:]
    assert later, "resumed schedule did not fire"
    assert all(datetime.fromisoformat(r["tick"]) > paused_at + timedelta(seconds=2) for r in later)
    assert {r["outcome"] for r in later} == {"fired"}


def test_run_now_job_runs(system: System) -> None:
    s = create(system, every("manual", 3600.0))
    with system.client() as c:
        r = c.post(f"/schedules/{s['id']}/run-now")
        assert r.status_code == 201, r.text
    job = system.wait_terminal([r.json()["job_id"]], timeout=20)[r.json()["job_id"]]
    assert job["status"] == "succeeded" and job["schedule_id"] == s["id"]


def test_catch_up_policies_after_downtime(system: System) -> None:
    system.stop("scheduler")
    common = {"misfire_grace_s": 1.0, "catchup_window_s": 4.0, "max_catchup": 3}
    none = create(system, every("cu-none", 1.0, catchup_policy="none", **common))
    now = create(
        system, every("cu-now", 1.0, catchup_policy="fire_immediately", overlap_policy="allow", **common)
    )
    spread = create(
        system, every("cu-spread", 1.0, catchup_policy="spread", overlap_policy="allow", **common)
    )
    time.sleep(6.5)  # ~6 ticks pass with no scheduler; all but the newest are later than the grace
    system._spawn("scheduler", "scheduler")
    time.sleep(7.0)
    for s in (none, now, spread):
        pause(system, s["id"])

    h = runs(system, none["id"])
    missed = [r for r in h if r["outcome"] == "missed"]
    assert len(missed) == 1 and missed[0]["count"] >= 4, h
    assert not [r for r in h if r["outcome"] == "fired" and r["reason"] == "catchup"]

    h = runs(system, now["id"])
    caught = [r for r in h if r["outcome"] == "fired" and r["reason"] == "catchup"]
    assert len(caught) == 3, h  # max_catchup
    assert [r for r in h if r["outcome"] == "missed"], h  # the rest, outside window or over the cap
    fired_at = [datetime.fromisoformat(r["fired_at"]) for r in caught]
    assert max(fired_at) - min(fired_at) < timedelta(seconds=1)  # all at once

    h = runs(system, spread["id"])
    caught = [r for r in h if r["outcome"] == "fired" and r["reason"] == "catchup"]
    assert len(caught) == 3, h
    fired_at = sorted(datetime.fromisoformat(r["fired_at"]) for r in caught)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fired_at)]
    assert all(1.0 <= g <= 2.0 for g in gaps), gaps  # spread over the 4 s window: one per 1.33 s


def test_cli_schedules(system: System) -> None:
    from tests.e2e.test_cli import cli

    made = cli(system, "schedules", "create", "--name", "cli-sched", "--cron", "*/1 * * * * *",
               "--shell", "true", "--overlap", "allow", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["id"]
    bad = cli(system, "schedules", "create", "--name", "cli-bad", "--cron", "61 * * * *", "--shell", "true")
    assert bad.returncode == 2 and "minute" in bad.stderr, bad.stderr
    listed = cli(system, "schedules", "ls")
    assert listed.returncode == 0 and sid in listed.stdout and "cli-sched" in listed.stdout
    preview = json.loads(cli(system, "schedules", "preview", sid, "--count", "3", "--json").stdout)
    assert len(preview) == 3
    job_id = cli(system, "schedules", "run-now", sid).stdout.strip()
    assert system.wait_terminal([job_id], timeout=20)[job_id]["status"] == "succeeded"
    time.sleep(2.5)
    assert "paused" in cli(system, "schedules", "pause", sid, "--note", "cli test").stdout
    shown = cli(system, "schedules", "show", sid)
    assert shown.returncode == 0 and "cli test" in shown.stdout and "run_now" in shown.stdout
    assert "fired" in shown.stdout
    assert "active" in cli(system, "schedules", "resume", sid).stdout
    assert "deleted" in cli(system, "schedules", "rm", sid).stdout
    gone = cli(system, "schedules", "pause", sid)
    assert gone.returncode == 4, gone.stderr


def test_two_schedulers_200_ticks_no_duplicates_and_leader_kill_loses_nothing(system: System) -> None:
    system._spawn("scheduler-2", "scheduler")
    s = create(system, every("fast", 0.1, "true", overlap_policy="allow"))
    created = datetime.fromisoformat(s["created_at"])
    time.sleep(12.0)
    leader = "scheduler" if "scheduler is leader" in system.log("scheduler") else "scheduler-2"
    system.stop(leader, signal.SIGKILL)
    time.sleep(LEASE_TTL_S + 8.0)  # the standby takes over once the dead leader's lease expires
    pause(system, s["id"])
    history = runs(system, s["id"])
    ticks = [datetime.fromisoformat(r["tick"]) for r in history]
    assert len(ticks) >= 200, len(ticks)
    assert len(ticks) == len(set(ticks)), "a tick was recorded twice"
    expected = [created + timedelta(seconds=0.1 * k) for k in range(1, len(ticks) + 1)]
    assert ticks == expected, "a tick was lost or out of order"
    assert {r["outcome"] for r in history} == {"fired"}
    ids = [r["job_id"] for r in history]
    assert len(set(ids)) == len(ids)
    done = system.wait_terminal(ids, timeout=60)
    assert {j["status"] for j in done.values()} == {"succeeded"}
    if leader == "scheduler":
        system._spawn("scheduler", "scheduler")
