"""The analytics routes, `GET /jobs` time filters and counts, and `POST /sql`, in-process against a
real nats-server: job and worker events are appended to the log, the API's projector folds them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events import subjects
from events.ids import new_id
from events.store import Append, EventStore, job_append
from events.worker import Registered
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client
from tests.unit.test_analytics import run_job

V1 = "/api/v1"
ORIGIN = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def append_history(url: str, a: str, b: str) -> None:
    """Domain a: `ok` x3 (1 s), `bad` (exit 3), `slow` (20 s), one worker of 4 slots; b: `theirs` (exit 5)."""
    nc = await connect(url, "analytics-test")
    store = EventStore(nc, jetstream(nc))
    try:
        for domain in (a, b):
            worker = Registered(domain=domain, actor="test", worker_id=f"w-{domain}", max_concurrency=4,
                                at=ORIGIN - timedelta(seconds=10))  # fmt: skip
            await store.append(
                Append(subject=subjects.worker(domain, worker.worker_id, worker.type), event=worker)
            )
        jobs = [
            *[
                run_job(a, new_id(), "ok", f"w-{a}", 10 * i, dur=1, tags=("fast",), origin=ORIGIN)
                for i in range(3)
            ],
            run_job(a, new_id(), "bad", f"w-{a}", 40, ok=False, tags=("fast",), origin=ORIGIN),
            run_job(a, new_id(), "slow", f"w-{a}", 50, dur=20, origin=ORIGIN),
            run_job(b, new_id(), "theirs", f"w-{b}", 0, ok=False, exit_code=5, origin=ORIGIN),
        ]
        for events in jobs:
            last = 0
            for event in events:
                last = (await store.append(job_append(event, last))).seq
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def world(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    a, b = f"an-a-{new_id()[-6:].lower()}", f"an-b-{new_id()[-6:].lower()}"
    with api_client(nats_server.url, tmp_path_factory.mktemp("analytics-api")) as api:
        tokens = {}
        for name in (a, b):
            r = api.post(f"{V1}/admin/domains", json={"name": name}, headers=AUTH)
            assert r.status_code == 201, r.text
            tokens[name] = r.json()["token"]["token"]
        asyncio.run(append_history(nats_server.url, a, b))
        deadline = time.monotonic() + 20
        while api.get(f"{V1}/jobs/count", headers=bearer(tokens[a])).json()["total"] < 5:
            assert time.monotonic() < deadline, "the API's read model never caught up"
            time.sleep(0.1)
        yield {"api": api, "a": a, "b": b, "ta": tokens[a], "tb": tokens[b]}


def test_runs_over_time_and_durations_per_name(world: dict[str, Any]) -> None:
    api, ta = world["api"], world["ta"]
    r = api.get(f"{V1}/analytics/runs", params={"interval": "1h"}, headers=bearer(ta))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["domain"] == world["a"] and len(body["buckets"]) == 24
    totals: dict[str, int] = {}
    for bucket in body["buckets"]:
        for status, n in bucket["by_status"].items():
            totals[status] = totals.get(status, 0) + n
    assert totals == {"succeeded": 4, "failed": 1}
    items = api.get(f"{V1}/analytics/durations", headers=bearer(ta)).json()["items"]
    by_name = {i["name"]: i for i in items}
    assert by_name["ok"]["runs"] == 3 and by_name["ok"]["success_rate"] == 1.0
    assert by_name["bad"]["success_rate"] == 0.0
    assert by_name["slow"]["duration_p50_s"] == 20.0
    tags = api.get(f"{V1}/analytics/durations", params={"group_by": "tag"}, headers=bearer(ta)).json()
    assert [(i["tag"], i["runs"]) for i in tags["items"]] == [("fast", 4)]


def test_failures_slowest_queue_wait_utilisation_and_schedules(world: dict[str, Any]) -> None:
    api, h = world["api"], bearer(world["ta"])
    failures = api.get(f"{V1}/analytics/failures", headers=h).json()["items"]
    assert [(f["status"], f["exit_code"], f["attempts"]) for f in failures] == [("failed", 3, 1)]
    failing = api.get(f"{V1}/analytics/failing", headers=h).json()["items"]
    assert [(f["name"], f["failures"]) for f in failing] == [("bad", 1)]
    slowest = api.get(f"{V1}/analytics/slowest", params={"limit": 1}, headers=h).json()["items"]
    assert [s["name"] for s in slowest] == ["slow"]
    now = datetime.now(UTC)
    window = {"since": (now - timedelta(hours=1)).isoformat(), "until": now.isoformat(), "interval": "5m"}
    waits = api.get(f"{V1}/analytics/queue-wait", params=window, headers=h).json()["buckets"]
    assert len(waits) == 12 and sum(b["runs"] for b in waits) == 5
    assert {b["p50_s"] for b in waits if b["runs"]} == {1.0}
    util = api.get(f"{V1}/analytics/utilisation", params=window, headers=h).json()
    # 3 x 1.5 s + 10.5 s + 20.5 s of slots held (dispatch to end), over 300 s buckets
    assert sum(b["busy_slots"] for b in util["buckets"]) == pytest.approx(35.5 / 300)
    assert util["buckets"][-1]["capacity"] == 4
    assert [w["worker_id"] for w in util["workers"]] == [f"w-{world['a']}"]
    assert api.get(f"{V1}/analytics/schedules", headers=h).json()["items"] == []


def test_each_domain_sees_its_own_runs_only(world: dict[str, Any]) -> None:
    api = world["api"]
    theirs = api.get(f"{V1}/analytics/failures", headers=bearer(world["tb"])).json()["items"]
    assert [(f["exit_code"], f["attempts"]) for f in theirs] == [(5, 1)]
    r = api.get(f"{V1}/analytics/failures", params={"domain": world["b"]}, headers=bearer(world["ta"]))
    assert r.status_code == 404
    admin = api.get(f"{V1}/analytics/failures", params={"domain": world["b"]}, headers=AUTH).json()
    assert admin["items"] == theirs


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("runs", {"interval": "1m", "since": "2020-01-01T00:00:00Z"}, "at most 10000"),
        ("runs", {"interval": "soon"}, "must look like"),
        ("queue-wait", {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "before"),
        ("durations", {"group_by": "colour"}, "group_by"),
        ("runs", {"since": "yesterday"}, "since"),
    ],
)
def test_bad_ranges_are_422_naming_the_problem(
    world: dict[str, Any], path: str, params: dict[str, str], named: str
) -> None:
    r = world["api"].get(f"{V1}/analytics/{path}", params=params, headers=bearer(world["ta"]))
    assert r.status_code == 422 and named in r.json()["detail"], r.text


def test_jobs_since_until_and_counts(world: dict[str, Any]) -> None:
    api, h = world["api"], bearer(world["ta"])
    assert api.get(f"{V1}/jobs/count", headers=h).json() == {"total": 5}
    by_status = api.get(f"{V1}/jobs/count", params={"group_by": "status"}, headers=h).json()["counts"]
    assert by_status == [{"status": "succeeded", "count": 4}, {"status": "failed", "count": 1}]
    by_name = api.get(f"{V1}/jobs/count", params={"group_by": "name"}, headers=h).json()["counts"]
    assert by_name[0] == {"name": "ok", "count": 3}
    by_worker = api.get(f"{V1}/jobs/count", params={"group_by": "worker"}, headers=h).json()["counts"]
    assert by_worker == [{"worker": f"w-{world['a']}", "count": 5}]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get(f"{V1}/jobs", params={"since": future}, headers=h).json()["items"] == []
    assert len(api.get(f"{V1}/jobs", params={"until": future}, headers=h).json()["items"]) == 5
    r = api.get(f"{V1}/jobs/count", params={"group_by": "colour"}, headers=h)
    assert r.status_code == 400 and "group_by" in r.json()["detail"]


def test_sql_is_scoped_read_only_and_capped(world: dict[str, Any]) -> None:
    api = world["api"]
    query = {"sql": "SELECT domain, count(*) AS n FROM runs GROUP BY domain ORDER BY domain"}
    mine = api.post(f"{V1}/sql", json=query, headers=bearer(world["ta"])).json()
    assert mine["rows"] == [[world["a"], 5]] and mine["scope"] == world["a"]
    everything = api.post(f"{V1}/sql", json=query, headers=AUTH).json()
    assert [world["a"], 5] in everything["rows"] and [world["b"], 1] in everything["rows"]
    capped = api.post(
        f"{V1}/sql", json={"sql": "SELECT * FROM runs", "max_rows": 2}, headers=bearer(world["ta"])
    )
    assert capped.json()["row_count"] == 2 and capped.json()["truncated"] is True
    for sql, named in [
        ("DELETE FROM jobs", "only SELECT"),
        ("SELECT * FROM read_csv('/etc/passwd')", "not allowed"),
        ("ATTACH '/tmp/x.duckdb'", "only SELECT"),
    ]:
        r = api.post(f"{V1}/sql", json={"sql": sql}, headers=bearer(world["ta"]))
        assert r.status_code == 400 and named in r.json()["detail"], r.text
    assert api.get(f"{V1}/jobs/count", headers=bearer(world["ta"])).json()["total"] == 5
