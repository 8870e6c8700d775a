"""Schedule routes in-process against a real nats-server and DuckDB file (no scheduler running)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client, last_seq

V1 = "/api/v1"


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("sched-api")) as client:
        yield client


def schedule(name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "job": {"name": name, "executor": {"type": "shell", "script": "true"}},
    }
    if "interval_s" not in extra:
        body["cron"] = "*/5 * * * *"
    return {**body, **extra}


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("minute out of range", schedule("b1", cron="61 * * * *"), "minute"),
    ("seven fields", schedule("b2", cron="* * * * * * *"), "6"),
    ("garbage cron", schedule("b3", cron="every day"), "cron"),
    ("L alone in day of week", schedule("b13", cron="0 0 * * L"), "field 'day-of-week' 'L' alone"),
    ("W on a range", schedule("b14", cron="0 0 1-5W * *"), "field 'day-of-month' '1-5W'"),
    ("# count too high", schedule("b15", cron="0 0 * * 5#6"), "field 'day-of-week' '5#6'"),
    ("no such day in the month", schedule("b16", cron="0 0 31W 4 *"), "never fires"),
    ("? in the hour", schedule("b17", cron="0 ? * * *"), "field 'hour' '?'"),
    ("unknown zone", schedule("b4", timezone="Mars/Olympus"), "Mars/Olympus"),
    ("cron and interval", {**schedule("b5"), "interval_s": 60}, "cron"),
    ("neither", {"name": "b6", "job": schedule("b6")["job"]}, "cron"),
    ("zero interval", {**schedule("b7", interval_s=0), "cron": None}, "interval_s"),
    ("bad overlap policy", schedule("b8", overlap_policy="sometimes"), "overlap_policy"),
    ("naive start", schedule("b9", start_at="2026-01-01T00:00:00"), "start_at"),
    ("end before start",
     schedule("b10", start_at="2026-02-01T00:00:00Z", end_at="2026-01-01T00:00:00Z"), "end"),
    ("bad job", {**schedule("b11"), "job": {"name": "x", "executor": {"type": "cobol"}}}, "job.executor"),
    ("unknown field", schedule("b12", colour="blue"), "colour"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "named"), BAD, ids=[b[0] for b in BAD])
def test_bad_schedules_are_refused_naming_the_problem_and_append_nothing(
    api: TestClient, nats_server: NatsServer, what: str, body: dict[str, Any], named: str
) -> None:
    before = last_seq(nats_server.url)
    r = api.post(f"{V1}/schedules", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"], r.json()
    assert last_seq(nats_server.url) == before


def test_create_show_list_patch_pause_resume_delete(api: TestClient) -> None:
    r = api.post(f"{V1}/schedules", json=schedule("nightly", cron="0 2 * * *", timezone="Europe/Berlin"),
                 headers=AUTH)  # fmt: skip
    assert r.status_code == 201, r.text
    s = r.json()
    sid = s["id"]
    assert s["status"] == "active" and s["spec"]["timezone"] == "Europe/Berlin"
    nxt = datetime.fromisoformat(s["next_fire_at"])
    local = nxt.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (2, 0) and nxt > datetime.now(UTC)

    assert api.post(f"{V1}/schedules", json=schedule("nightly"), headers=AUTH).status_code == 409
    listed = api.get(f"{V1}/schedules", headers=AUTH)
    assert listed.status_code == 200, listed.text
    names = [x["spec"]["name"] for x in listed.json()]
    assert "nightly" in names

    r = api.patch(f"{V1}/schedules/{sid}", json={"interval_s": 3600, "jitter_s": 5}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["spec"].get("cron") is None and r.json()["spec"]["interval_s"] == 3600
    r = api.patch(f"{V1}/schedules/{sid}", json={"cron": "bad"}, headers=AUTH)
    assert r.status_code == 422 and "cron" in r.json()["detail"]

    r = api.post(f"{V1}/schedules/{sid}/pause", json={"note": "maintenance"}, headers=AUTH)
    assert r.json()["status"] == "paused" and r.json()["pause_note"] == "maintenance"
    assert r.json()["next_fire_at"] is None
    assert api.post(f"{V1}/schedules/{sid}/disable", headers=AUTH).status_code == 409
    assert api.post(f"{V1}/schedules/{sid}/enable", headers=AUTH).json()["status"] == "active"
    assert api.get(f"{V1}/schedules?status=paused", headers=AUTH).json() == []

    r = api.delete(f"{V1}/schedules/{sid}", headers=AUTH)
    assert r.json()["status"] == "deleted"
    assert "nightly" not in [x["spec"]["name"] for x in api.get(f"{V1}/schedules", headers=AUTH).json()]
    assert api.post(f"{V1}/schedules/{sid}/run-now", headers=AUTH).status_code == 404
    assert api.get(f"{V1}/schedules/nope", headers=AUTH).status_code == 404
    assert api.get(f"{V1}/schedules?status=bogus", headers=AUTH).status_code == 400


def test_upsert_is_idempotent(api: TestClient, nats_server: NatsServer) -> None:
    body = schedule("upserted", cron="*/10 * * * *")
    first = api.post(f"{V1}/schedules/upsert", json=body, headers=AUTH)
    assert first.status_code == 201, first.text
    seq = last_seq(nats_server.url)
    again = api.post(f"{V1}/schedules/upsert", json=body, headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert last_seq(nats_server.url) == seq  # nothing changed, nothing appended
    changed = api.post(f"{V1}/schedules/upsert", json={**body, "cron": "*/20 * * * *"}, headers=AUTH)
    assert changed.json()["id"] == first.json()["id"] and changed.json()["spec"]["cron"] == "*/20 * * * *"


def test_run_now_and_backfill_make_linked_jobs_once(api: TestClient) -> None:
    created = api.post(f"{V1}/schedules", json=schedule("filler", interval_s=60), headers=AUTH).json()
    sid = created["id"]
    r = api.post(f"{V1}/schedules/{sid}/run-now", headers=AUTH)
    assert r.status_code == 201, r.text
    job = api.get(f"{V1}/jobs/{r.json()['job_id']}", headers=AUTH).json()
    assert job["schedule_id"] == sid and job["status"] == "pending"
    assert r.json()["schedule"]["fired"] == 1

    runs = api.get(f"{V1}/schedules/{sid}/runs", headers=AUTH).json()["items"]
    assert [(r["outcome"], r["reason"], r["job_id"]) for r in runs] == [("fired", "run_now", job["id"])]
    # run-now does not move the next regular tick
    again = api.get(f"{V1}/schedules/{sid}", headers=AUTH).json()
    assert again["next_fire_at"] == created["next_fire_at"] and again["last_job_id"] == job["id"]


def test_backfill_fires_each_past_tick_once(api: TestClient) -> None:
    start_at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    body = schedule("back", interval_s=600, start_at=start_at.isoformat())
    sid = api.post(f"{V1}/schedules", json=body, headers=AUTH).json()["id"]
    window = {"start": (start_at - timedelta(seconds=1)).isoformat(),
              "end": (start_at + timedelta(minutes=30)).isoformat()}  # fmt: skip
    r = api.post(f"{V1}/schedules/{sid}/backfill", json=window, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ticks"] == 4 and len(out["fired"]) == 4 and out["existing"] == []  # :00 :10 :20 :30
    again = api.post(f"{V1}/schedules/{sid}/backfill", json=window, headers=AUTH).json()
    assert again["fired"] == [] and sorted(again["existing"]) == sorted(out["fired"])
    runs = api.get(f"{V1}/schedules/{sid}/runs", headers=AUTH).json()["items"]
    assert [r["reason"] for r in runs] == ["backfill"] * 4
    assert {r["job_id"] for r in runs} == set(out["fired"]) and all(
        r["job_status"] == "pending" for r in runs
    )
    future = {"start": start_at.isoformat(), "end": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    r = api.post(f"{V1}/schedules/{sid}/backfill", json=future, headers=AUTH)
    assert r.status_code == 400 and "future" in r.json()["detail"]


def test_preview_in_zone_and_utc(api: TestClient) -> None:
    body = schedule("previewed", cron="30 9 * * MON-FRI", timezone="America/New_York")
    sid = api.post(f"{V1}/schedules", json=body, headers=AUTH).json()["id"]
    r = api.get(f"{V1}/schedules/{sid}/preview?count=7", headers=AUTH)
    assert r.status_code == 200, r.text
    items = r.json()
    assert len(items) == 7
    for item in items:
        local = datetime.fromisoformat(item["local"])
        assert (local.hour, local.minute) == (9, 30) and local.weekday() < 5
        assert datetime.fromisoformat(item["tick"]) == local
    assert api.get(f"{V1}/schedules/{sid}/preview?count=0", headers=AUTH).status_code == 422


def test_preview_of_a_wrapped_range_and_last_weekday(api: TestClient) -> None:
    """Forms croniter computes differently or refuses are accepted and mean what peers mean."""
    body = schedule("night-shift", cron="0 23-3/2 * * *", timezone="UTC")
    sid = api.post(f"{V1}/schedules", json=body, headers=AUTH).json()["id"]
    items = api.get(f"{V1}/schedules/{sid}/preview?count=6", headers=AUTH).json()
    assert {datetime.fromisoformat(i["tick"]).hour for i in items} == {23, 1, 3}
    body = schedule("last-friday", cron="1 1 * * 5L", timezone="Europe/Berlin")
    r = api.post(f"{V1}/schedules", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    items = api.get(f"{V1}/schedules/{r.json()['id']}/preview?count=3", headers=AUTH).json()
    for item in items:
        local = datetime.fromisoformat(item["local"])
        assert local.weekday() == 4 and (local + timedelta(days=7)).month != local.month, local


def test_preview_of_an_unsaved_spec_is_the_saved_ones_and_appends_nothing(
    api: TestClient, nats_server: NatsServer
) -> None:
    body = schedule("not-yet", cron="30 9 * * MON-FRI", timezone="America/New_York")
    before = last_seq(nats_server.url)
    r = api.post(f"{V1}/schedules/preview?count=5", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    unsaved = r.json()
    assert last_seq(nats_server.url) == before  # a preview is not a write
    sid = api.post(f"{V1}/schedules", json=body, headers=AUTH).json()["id"]
    assert api.get(f"{V1}/schedules/{sid}/preview?count=5", headers=AUTH).json() == unsaved
    bad = api.post(f"{V1}/schedules/preview", json={**body, "cron": "61 * * * *"}, headers=AUTH)
    assert bad.status_code == 422 and "minute" in bad.json()["detail"], bad.text
    never = api.post(f"{V1}/schedules/preview", json={**body, "cron": "0 0 30 2 *"}, headers=AUTH)
    assert never.status_code == 422 and "never fires" in never.json()["detail"], never.text
    jittered = api.post(f"{V1}/schedules/preview?count=5", json={**body, "jitter_s": 30}, headers=AUTH).json()
    assert [i["tick"] for i in jittered] == [i["tick"] for i in unsaved]
    assert {i["fire_at"] for i in jittered} == {None}


def test_metrics_count_ticks_and_due_schedules(api: TestClient) -> None:
    sid = api.post(f"{V1}/schedules", json=schedule("metered", interval_s=3600), headers=AUTH).json()["id"]
    api.post(f"{V1}/schedules/{sid}/run-now", headers=AUTH)
    text = api.get("/metrics").text
    fired = [
        line for line in text.splitlines() if line.startswith('jobstream_schedule_ticks_total{domain="prod"')
    ]
    assert any('outcome="fired"' in line and float(line.split()[-1]) >= 1 for line in fired), fired
    assert "jobstream_schedule_fire_lateness_seconds_bucket" in text
    assert "jobstream_schedules_due" in text
