"""GET /jobs/{id}/logs on a real broker: pages and cursors that reach inside multi-line messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from events import subjects
from events.codec import encode
from events.streams import logs_stream
from events.worker import LogBatch, LogLine
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("api")) as client:
        client.headers.update(AUTH)
        yield client


def _parked_job(api: TestClient, terminal: bool = False) -> dict[str, Any]:
    """A job no worker takes (nobody has its tag), whose output the test writes itself."""
    body = {"name": "logs", "executor": {"type": "shell", "script": "true"}, "tags": ["nobody-has-this"]}
    response = api.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    if terminal:
        assert api.post(f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "test"}).status_code == 200
    return job


def _publish(url: str, domain: str, job_id: str, attempts: dict[int, list[list[int]]]) -> None:
    """Per attempt, messages of lines numbered as given: a one-element list is a v1 one-line message."""

    async def run() -> None:
        nc = await connect(url, "test-logs")
        js = jetstream(nc)
        try:
            for attempt, messages in attempts.items():
                for numbers in messages:
                    lines = [LogLine(seq=n, stream="stdout", line=f"a{attempt} l{n}") for n in numbers]
                    data = encode(lines[0]) if len(lines) == 1 else encode(LogBatch(lines=lines))
                    await js.publish(subjects.logs(domain, job_id, attempt), data, stream=logs_stream(domain))
        finally:
            await nc.close()

    asyncio.run(run())


def _all_pages(api: TestClient, job_id: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.get(f"/api/v1/jobs/{job_id}/logs", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        out.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return out, pages


def test_pages_cut_inside_batches_and_join_up_exactly(api: TestClient, nats_server: NatsServer) -> None:
    job = _parked_job(api)
    # Attempt 1: batches of 3 and a one-line message; attempt 2: a batch of 4.
    _publish(nats_server.url, job["domain"], job["id"], {1: [[1, 2, 3], [4], [5, 6, 7]], 2: [[1, 2, 3, 4]]})
    expected = [(1, n) for n in range(1, 8)] + [(2, n) for n in range(1, 5)]
    for limit in (1, 2, 3, 5, 11, 10_000):
        lines, pages = _all_pages(api, job["id"], limit=limit)
        assert [(x["attempt"], x["seq"]) for x in lines] == expected, limit
        assert pages >= -(-len(expected) // limit)
        assert [x["line"] for x in lines][:2] == ["a1 l1", "a1 l2"]
    only_two, _ = _all_pages(api, job["id"], attempt=2, limit=3)
    assert [x["seq"] for x in only_two] == [1, 2, 3, 4] and {x["attempt"] for x in only_two} == {2}
    tail = api.get(f"/api/v1/jobs/{job['id']}/logs", params={"tail": 5}).json()
    assert [(x["attempt"], x["seq"]) for x in tail["items"]] == expected[-5:] and tail["next_cursor"] is None
    assert api.get(f"/api/v1/jobs/{job['id']}/logs", params={"cursor": "nonsense"}).status_code == 422


def test_a_job_without_output_has_an_empty_last_page(api: TestClient) -> None:
    job = _parked_job(api)
    assert api.get(f"/api/v1/jobs/{job['id']}/logs").json() == {"items": [], "next_cursor": None}


def test_follow_of_an_ended_job_sends_every_line_of_every_batch_then_end(
    api: TestClient, nats_server: NatsServer
) -> None:
    job = _parked_job(api, terminal=True)
    batches = [list(range(i, i + 250)) for i in range(1, 5001, 250)]
    _publish(nats_server.url, job["domain"], job["id"], {1: batches, 2: [[1, 2]]})
    events: list[tuple[str, Any]] = []
    with api.stream("GET", f"/api/v1/jobs/{job['id']}/logs", params={"follow": "true"}) as response:
        event = "message"
        for raw in response.iter_lines():
            if raw.startswith("event:"):
                event = raw[6:].strip()
            elif raw.startswith("data:"):
                events.append((event, json.loads(raw[5:].strip())))
    assert events[-1] == ("end", {"status": "cancelled"})
    lines = [(d["attempt"], d["seq"]) for e, d in events if e == "line"]
    assert lines == [(1, n) for n in range(1, 5001)] + [(2, 1), (2, 2)]


def test_tail_finds_the_last_lines_across_batches_and_attempts(
    api: TestClient, nats_server: NatsServer
) -> None:
    job = _parked_job(api)
    batches = [list(range(i, i + 250)) for i in range(1, 5001, 250)]
    _publish(nats_server.url, job["domain"], job["id"], {1: batches, 2: [[n] for n in range(1, 4)]})
    expected = [(1, n) for n in range(1, 5001)] + [(2, n) for n in range(1, 4)]
    for n in (1, 3, 4, 253, 5003, 6000):
        page = api.get(f"/api/v1/jobs/{job['id']}/logs", params={"tail": n}).json()
        assert [(x["attempt"], x["seq"]) for x in page["items"]] == expected[-n:], n
    assert api.get(f"/api/v1/jobs/{job['id']}/logs", params={"tail": 2, "cursor": "1.0"}).status_code == 422


def _follow(
    api: TestClient, job_id: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> list[tuple[str, str, Any]]:
    """A follow stream read to its end, as (event, id, data)."""
    out: list[tuple[str, str, Any]] = []
    query = {"follow": "true", **(params or {})}
    with api.stream("GET", f"/api/v1/jobs/{job_id}/logs", params=query, headers=headers) as response:
        assert response.status_code == 200, response.read()
        event, id_ = "message", ""
        for raw in response.iter_lines():
            if raw.startswith("event:"):
                event = raw[6:].strip()
            elif raw.startswith("id:"):
                id_ = raw[3:].strip()
            elif raw.startswith("data:"):
                out.append((event, id_, json.loads(raw[5:].strip())))
            elif not raw:
                event, id_ = "message", ""
    return out


def test_a_follow_resumed_with_last_event_id_goes_on_after_that_line_inside_a_batch(
    api: TestClient, nats_server: NatsServer
) -> None:
    job = _parked_job(api, terminal=True)
    _publish(nats_server.url, job["domain"], job["id"], {1: [[1, 2, 3], [4], [5, 6, 7]], 2: [[1, 2]]})
    whole = _follow(api, job["id"])
    lines = [(e, i, (d["attempt"], d["seq"])) for e, i, d in whole if e == "line"]
    assert [x[2] for x in lines] == [(1, n) for n in range(1, 8)] + [(2, 1), (2, 2)]
    for cut in range(len(lines)):  # a drop after every line, mid-batch included
        rest = _follow(api, job["id"], headers={"Last-Event-ID": lines[cut][1]})
        got = [(d["attempt"], d["seq"]) for e, _, d in rest if e == "line"]
        assert got == [x[2] for x in lines[cut + 1 :]], cut
        assert rest[-1][0] == "end"
    # `cursor` (a page's next_cursor) starts at that line.
    page = api.get(f"/api/v1/jobs/{job['id']}/logs", params={"limit": 2}).json()
    rest = _follow(api, job["id"], params={"cursor": page["next_cursor"]})
    assert [(d["attempt"], d["seq"]) for e, _, d in rest if e == "line"] == [x[2] for x in lines[2:]]
    for bad in ("7", "x.1", "0.0"):
        with api.stream(
            "GET", f"/api/v1/jobs/{job['id']}/logs", params={"follow": "true"}, headers={"Last-Event-ID": bad}
        ) as response:
            assert response.status_code == 422 and "pos" in response.read().decode()
