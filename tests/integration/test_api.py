"""The REST edge in-process (FastAPI TestClient) against a real nats-server and DuckDB file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client, last_seq


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("api")) as client:
        yield client


def shell(script: str = "true", **extra: Any) -> dict[str, Any]:
    return {"name": "t", "executor": {"type": "shell", "script": script}, **extra}


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("unknown executor", {"name": "x", "executor": {"type": "cobol", "script": "x"}}, "executor"),
    ("missing script", {"name": "x", "executor": {"type": "shell"}}, "executor.shell.script"),
    ("negative timeout", shell(timeout_s=-1), "timeout_s"),
    ("unknown field", shell(colour="blue"), "colour"),
    ("empty name", {**shell(), "name": ""}, "name"),
    ("two sources", {"name": "x", "executor": {"type": "python", "script": "1", "module": "m"}}, "one of"),
    ("bad callable", {"name": "x", "executor": {"type": "python", "callable": "no colon"}}, "callable"),
    ("bad env name", shell(env={"1BAD": "x"}), "env"),
    ("bad regex", shell(completion={"stdout_match": "("}), "regular expression"),
    ("bad exit code", shell(completion={"exit_codes": [300]}), "exit_codes"),
    ("NUL in script", shell("echo \x00"), "NUL"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "named"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_jobs_are_refused_with_the_field_named_and_nothing_appended(
    api: TestClient, nats_server: NatsServer, what: str, body: Any, named: str
) -> None:
    before = last_seq(nats_server.url)
    r = api.post("/api/v1/jobs", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"], r.json()
    assert last_seq(nats_server.url) == before


def test_malformed_json_bad_utf8_and_oversize_bodies(api: TestClient, nats_server: NatsServer) -> None:
    before = last_seq(nats_server.url)
    headers = {**AUTH, "Content-Type": "application/json"}
    r = api.post("/api/v1/jobs", content=b'{"name": "x",', headers=headers)
    assert r.status_code == 422 and "malformed JSON" in r.json()["detail"]
    r = api.post(
        "/api/v1/jobs",
        content=b'{"name":"x","executor":{"type":"shell","script":"echo \xff"}}',
        headers=headers,
    )
    assert r.status_code == 422 and "not valid UTF-8" in r.json()["detail"], r.text
    r = api.post("/api/v1/jobs", json=shell("x" * (2 * 1024 * 1024)), headers=AUTH)
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert last_seq(nats_server.url) == before


def test_a_batch_with_one_bad_job_appends_nothing(api: TestClient, nats_server: NatsServer) -> None:
    before = last_seq(nats_server.url)
    jobs = [shell() for _ in range(5)] + [shell(timeout_s=0)] + [shell()]
    r = api.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=AUTH)
    assert r.status_code == 422 and "jobs.5.timeout_s" in r.json()["detail"]
    r = api.post("/api/v1/jobs/batch", json={"jobs": [shell()] * 1001}, headers=AUTH)
    assert r.status_code == 422 and "jobs" in r.json()["detail"]
    assert last_seq(nats_server.url) == before


def test_submit_reads_back_at_once_and_lists_with_filters(api: TestClient) -> None:
    r = api.post("/api/v1/jobs", json=shell(tags=["nowhere-" + "x"], labels={"team": "data"}), headers=AUTH)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "pending" and job["spec"]["labels"] == {"team": "data"}
    # Read-your-writes: the answer came from the projection, so every read sees it now.
    assert api.get(f"/api/v1/jobs/{job['id']}", headers=AUTH).json()["id"] == job["id"]
    listed = api.get("/api/v1/jobs", params={"label": "team=data", "status": "pending"}, headers=AUTH).json()
    assert job["id"] in [j["id"] for j in listed["items"]]
    events = api.get(f"/api/v1/jobs/{job['id']}/events", headers=AUTH).json()
    assert [e["type"] for e in events] == ["submitted"] and events[0]["seq"] == job["last_seq"]
    r = api.post(f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "no"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # What the read model has applied: at least the cancel, which it answered from.
    info = api.get("/api/v1/info", headers=AUTH).json()
    assert info["read_model_seq"] >= r.json()["last_seq"] > job["last_seq"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "bogus"}, "unknown status"),
        ({"cursor": "%%%"}, "cursor"),
        ({"label": "novalue"}, "key=value"),
    ],
)
def test_bad_list_queries_name_the_problem(api: TestClient, params: dict[str, str], named: str) -> None:
    r = api.get("/api/v1/jobs", params=params, headers=AUTH)
    assert r.status_code in (400, 422) and named in r.json()["detail"]


def test_unknown_ids_are_404(api: TestClient) -> None:
    for path in ("/api/v1/jobs/nope", "/api/v1/jobs/bad.id", "/api/v1/workers/nope"):
        r = api.get(path, headers=AUTH)
        assert r.status_code == 404, path


def test_health_ready_metrics_and_docs(api: TestClient) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/ready").status_code == 200
    api.post("/api/v1/jobs", json=shell(), headers=AUTH)
    text = api.get("/metrics").text
    assert 'jobstream_jobs{domain="prod",status="pending"}' in text
    assert "jobstream_dispatch_latency_seconds_bucket" in text
    assert "jobstream_projection_lag_events" in text
    assert "jobstream_projection_undecodable_events" in text
    assert api.get("/openapi.json").json()["info"]["title"] == "jobstream"
    assert api.get("/api/v1/jobs").status_code == 401


def test_unknown_query_parameters_are_refused(api: TestClient) -> None:
    r = api.get("/api/v1/jobs?staus=failed", headers=AUTH)
    assert r.status_code == 422 and "staus" in r.json()["detail"] and "status" in r.json()["detail"]
    assert api.get("/api/v1/jobs?status=failed&domain=prod", headers=AUTH).status_code == 200


def test_without_a_valid_token_nothing_is_read_not_even_the_body(api: TestClient) -> None:
    r = api.post("/api/v1/jobs/batch", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = api.post("/api/v1/jobs", json={}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_an_idempotency_key_reused_with_another_body_is_refused(
    api: TestClient, nats_server: NatsServer
) -> None:
    key = {**AUTH, "Idempotency-Key": "reuse-1"}
    first = api.post("/api/v1/jobs", json=shell("echo one"), headers=key)
    assert first.status_code == 201, first.text
    again = api.post("/api/v1/jobs", json=shell("echo one"), headers=key)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    before = last_seq(nats_server.url)
    other = api.post("/api/v1/jobs", json=shell("echo two"), headers=key)
    assert other.status_code == 409, other.text
    assert other.json()["error"] == "idempotency_key_reused"
    assert "reuse-1" in other.json()["detail"] and first.json()["id"] in other.json()["detail"]
    assert last_seq(nats_server.url) == before
    batch = api.post(
        "/api/v1/jobs/batch",
        json={"jobs": [shell("a"), shell("b")]},
        headers={**AUTH, "Idempotency-Key": "reuse-2"},
    )
    assert batch.status_code in (200, 201), batch.text
    swapped = api.post(
        "/api/v1/jobs/batch",
        json={"jobs": [shell("b"), shell("a")]},
        headers={**AUTH, "Idempotency-Key": "reuse-2"},
    )
    assert swapped.status_code == 409, swapped.text


def test_swagger_docs_load_their_assets_from_this_server(api: TestClient) -> None:
    page = api.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "unpkg" not in page.text, "docs must work offline"
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), page.text
    for asset in assets:
        r = api.get(asset)
        assert r.status_code == 200 and len(r.content) > 1000, asset


def _first_event_ids(api: TestClient, n: int, **kw: Any) -> list[int]:
    ids: list[int] = []
    with api.stream("GET", "/api/v1/events", **kw) as stream:
        assert stream.status_code == 200, stream.read()
        for line in stream.iter_lines():
            if line.startswith("id:"):
                ids.append(int(line[3:].strip()))
                if len(ids) == n:
                    break
    return ids


def test_the_event_stream_resumes_after_last_event_id(api: TestClient) -> None:
    """What EventSource sends on reconnect: the stream goes on after that event, none twice."""
    parked = shell(tags=["nobody-has-this"])
    jobs = [api.post("/api/v1/jobs", json=parked, headers=AUTH).json() for _ in range(3)]
    seqs = [j["last_seq"] for j in jobs]
    assert _first_event_ids(api, 1, params={"since": seqs[0]}, headers=AUTH) == [seqs[0]]
    resumed = _first_event_ids(api, 1, headers={**AUTH, "Last-Event-ID": str(seqs[0])})
    assert resumed[0] > seqs[0] and resumed[0] <= seqs[1]
    both = api.get("/api/v1/events", params={"since": 1}, headers={**AUTH, "Last-Event-ID": "3"})
    assert both.status_code == 422 and "not both" in both.text
    bad = api.get("/api/v1/events", headers={**AUTH, "Last-Event-ID": "yesterday"})
    assert bad.status_code == 422 and "Last-Event-ID" in bad.text
