"""Bulk cancel and retry over real HTTP handling (in-process), a real broker and read model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.routes import bulk
from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client, last_seq

V1 = "/api/v1"


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("bulk")) as client:
        client.headers.update(AUTH)
        yield client


def parked(api: TestClient, tag: str, n: int) -> list[str]:
    """Jobs no worker takes (nobody has the tag): they stay pending."""
    body = {"name": "bulk", "executor": {"type": "shell", "script": "true"}, "tags": [tag]}
    return [api.post(f"{V1}/jobs", json=body).json()["id"] for _ in range(n)]


def status_of(api: TestClient, job_id: str) -> str:
    return str(api.get(f"{V1}/jobs/{job_id}").json()["status"])


def test_a_filter_is_counted_first_then_every_match_is_cancelled_each_with_its_result(
    api: TestClient, nats_server: NatsServer
) -> None:
    ids = parked(api, "bulk-a", 5)
    before = last_seq(nats_server.url)
    dry = api.post(f"{V1}/jobs/bulk/cancel", json={"filter": {"tag": "bulk-a"}, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["matched"] == 5 and set(dry.json()["ids"]) == set(ids) and dry.json()["results"] == []
    assert last_seq(nats_server.url) == before  # a dry run changes nothing
    done = api.post(f"{V1}/jobs/bulk/cancel", json={"filter": {"tag": "bulk-a"}, "reason": "cleanup"}).json()
    assert (done["matched"], done["succeeded"], done["failed"]) == (5, 5, 0)
    assert {r["id"]: r["status"] for r in done["results"]} == dict.fromkeys(ids, "cancelled")
    assert {status_of(api, i) for i in ids} == {"cancelled"}  # read-your-writes, as one cancel
    # Again: every one has ended, and each says so; none of them changed.
    seq = last_seq(nats_server.url)
    again = api.post(f"{V1}/jobs/bulk/cancel", json={"ids": ids}).json()
    assert again["failed"] == 5 and all("already cancelled" in r["error"] for r in again["results"])
    assert last_seq(nats_server.url) == seq


def test_retry_of_a_selection_makes_linked_jobs_and_names_the_ones_it_cannot_retry(api: TestClient) -> None:
    ended = parked(api, "bulk-b", 3)
    api.post(f"{V1}/jobs/bulk/cancel", json={"ids": ended})
    waiting = parked(api, "bulk-b", 1)
    out = api.post(f"{V1}/jobs/bulk/retry", json={"ids": [*ended, waiting[0], "nosuchjob", ended[0]]}).json()
    results: dict[str, Any] = {r["id"]: r for r in out["results"]}
    assert out["matched"] == 5 and (out["succeeded"], out["failed"]) == (3, 2)  # the repeat counts once
    for old in ended:
        new = api.get(f"{V1}/jobs/{results[old]['new_id']}").json()
        assert new["retry_of"] == old and results[old]["status"] == new["status"] == "pending"
    assert "only finished jobs" in results[waiting[0]]["error"]
    assert "not found" in results["nosuchjob"]["error"]


def test_not_status_leaves_statuses_out_of_lists_and_bulk_filters(api: TestClient) -> None:
    ids = parked(api, "bulk-c", 3)
    api.post(f"{V1}/jobs/bulk/cancel", json={"ids": ids[:1]})
    listed = api.get(f"{V1}/jobs", params={"tag": "bulk-c", "not_status": "cancelled,failed"}).json()
    assert {j["id"] for j in listed["items"]} == set(ids[1:])
    dry = api.post(
        f"{V1}/jobs/bulk/retry", json={"filter": {"tag": "bulk-c", "status": "cancelled"}, "dry_run": True}
    )
    assert dry.json()["ids"] == ids[:1]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "exactly one"),
        ({"ids": ["a"], "filter": {"tag": "x"}}, "exactly one"),
        ({"ids": []}, "ids"),
        ({"filter": {"status": "sleeping"}}, "unknown status 'sleeping'"),
        ({"filter": {"not_status": "nope"}}, "unknown status 'nope'"),
        ({"filter": {"label": "novalue"}}, "key=value"),
        ({"filter": {"colour": "blue"}}, "colour"),
    ],
)
def test_bad_selections_are_refused_naming_the_problem(
    api: TestClient, body: dict[str, Any], named: str
) -> None:
    r = api.post(f"{V1}/jobs/bulk/cancel", json=body)
    assert r.status_code in (400, 422) and named in r.text, r.text


def test_a_filter_matching_more_than_the_cap_is_refused_with_the_count(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    parked(api, "bulk-d", 3)
    monkeypatch.setattr(bulk, "MAX_BULK", 2)
    r = api.post(f"{V1}/jobs/bulk/cancel", json={"filter": {"tag": "bulk-d"}})
    assert r.status_code == 422 and "3 jobs match; at most 2" in r.json()["detail"]
    assert api.get(f"{V1}/jobs", params={"tag": "bulk-d", "status": "pending"}).json()["items"]
