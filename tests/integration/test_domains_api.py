"""Domains and tokens through the REST API: admin management, scoping, revocation, rotation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from fastapi.testclient import TestClient

from events import subjects
from events.store import Append, EventStore
from events.streams import EVENTS_STREAM
from events.worker import Registered
from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, TOKEN, api_client, last_seq, stream_dump

V1 = "/api/v1"


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("domains-api")) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_domain(api: TestClient, name: str) -> str:
    r = api.post(f"{V1}/admin/domains", json={"name": name, "description": f"team {name}"}, headers=AUTH)
    assert r.status_code == 201, r.text
    token = r.json()["token"]["token"]
    assert token.startswith("jst_")
    return str(token)


def shell(name: str = "t") -> dict[str, Any]:
    return {"name": name, "executor": {"type": "shell", "script": "true"}}


def test_default_domain_exists_and_the_admin_token_manages_domains(api: TestClient) -> None:
    names = [d["name"] for d in api.get(f"{V1}/admin/domains", headers=AUTH).json()]
    assert "prod" in names
    assert api.get(f"{V1}/admin/domains").status_code == 401
    bad = api.post(f"{V1}/admin/domains", json={"name": "Not Valid"}, headers=AUTH)
    assert bad.status_code == 400 and "name" in bad.json()["detail"]
    make_domain(api, "alpha")
    again = api.post(f"{V1}/admin/domains", json={"name": "alpha"}, headers=AUTH)
    assert again.status_code == 409
    assert api.delete(f"{V1}/admin/domains/prod", headers=AUTH).status_code == 409


def test_token_secrets_are_never_stored_or_shown(api: TestClient, nats_server: NatsServer) -> None:
    token = make_domain(api, "secretive")
    secret = token.split("_", 2)[2]
    listed = api.get(f"{V1}/admin/domains/secretive/tokens", headers=AUTH).json()
    assert len(listed) == 1 and listed[0]["name"] == "first"
    assert secret not in str(listed) and "sha256" not in str(listed)
    assert secret.encode() not in stream_dump(nats_server.url, EVENTS_STREAM, "ev.>")


def test_a_domain_token_sees_and_changes_only_its_domain(api: TestClient) -> None:
    a, b = make_domain(api, "team-a"), make_domain(api, "team-b")
    job_b = api.post(f"{V1}/jobs", json=shell("b-job"), headers=bearer(b)).json()["id"]
    job_a = api.post(f"{V1}/jobs", json=shell("a-job"), headers=bearer(a)).json()["id"]
    sched_b = api.post(
        f"{V1}/schedules", json={"name": "b-s", "interval_s": 3600, "job": shell()}, headers=bearer(b)
    ).json()["id"]
    assert api.get(f"{V1}/jobs/{job_a}", headers=bearer(a)).json()["domain"] == "team-a"
    assert [j["id"] for j in api.get(f"{V1}/jobs", headers=bearer(a)).json()["items"]] == [job_a]
    assert api.get(f"{V1}/schedules", headers=bearer(a)).json() == []

    # Domain A's token against domain B's resources: 404 everywhere, as if they did not exist.
    refused = [
        ("GET", f"/jobs/{job_b}"), ("GET", f"/jobs/{job_b}/events"), ("GET", f"/jobs/{job_b}/logs"),
        ("POST", f"/jobs/{job_b}/cancel"), ("POST", f"/jobs/{job_b}/retry"),
        ("GET", f"/schedules/{sched_b}"), ("PATCH", f"/schedules/{sched_b}"),
        ("DELETE", f"/schedules/{sched_b}"), ("POST", f"/schedules/{sched_b}/pause"),
        ("POST", f"/schedules/{sched_b}/run-now"), ("GET", f"/schedules/{sched_b}/runs"),
        ("GET", f"/schedules/{sched_b}/preview"),
    ]  # fmt: skip
    for method, path in refused:
        r = api.request(method, V1 + path, headers=bearer(a), json={} if method != "GET" else None)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # Naming the other domain explicitly: 404 too, never 403 (existence is not revealed).
    r = api.get(f"{V1}/jobs/{job_b}", headers={**bearer(a), "X-Domain": "team-b"})
    assert r.status_code == 404
    assert api.get(f"{V1}/jobs?domain=team-b", headers=bearer(a)).status_code == 404
    assert api.get(f"{V1}/jobs?domain=no-such", headers=bearer(a)).status_code == 404
    assert api.get(f"{V1}/jobs", headers={**bearer(a), "X-Domain": "team-a"}).status_code == 200
    # The admin reaches both, by naming the domain; unknown domains are 404.
    assert api.get(f"{V1}/jobs/{job_b}", headers={**AUTH, "X-Domain": "team-b"}).status_code == 200
    assert api.get(f"{V1}/jobs/{job_b}", headers=AUTH).status_code == 404  # prod by default
    assert api.get(f"{V1}/jobs", headers={**AUTH, "X-Domain": "nowhere"}).status_code == 404
    # Domain tokens are not admin tokens.
    assert api.get(f"{V1}/admin/domains", headers=bearer(a)).status_code == 403


@pytest.mark.parametrize(
    "token", ["", "nonsense", "jst_", "jst_x_y", "jst_01m89v3tp1rw3frstfmtz8r49v_wrong", TOKEN + "x"]
)
def test_bad_tokens_are_401(api: TestClient, token: str) -> None:
    r = api.get(f"{V1}/jobs", headers=bearer(token) if token else {})
    assert r.status_code == 401, r.text


def test_revoked_tokens_stop_at_once_and_rotation_overlaps(api: TestClient, nats_server: NatsServer) -> None:
    first = make_domain(api, "rotating")
    token_id = first.split("_")[1]
    assert api.get(f"{V1}/jobs", headers=bearer(first)).status_code == 200

    r = api.post(
        f"{V1}/admin/domains/rotating/tokens/{token_id}/rotate", json={"overlap_s": 3600}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    second = r.json()["token"]
    assert api.get(f"{V1}/jobs", headers=bearer(first)).status_code == 200  # overlap: both work
    assert api.get(f"{V1}/jobs", headers=bearer(second)).status_code == 200

    r = api.post(f"{V1}/admin/domains/rotating/tokens/{second.split('_')[1]}/rotate", json={"overlap_s": 0},
                 headers=AUTH)  # fmt: skip
    third = r.json()["token"]
    assert api.get(f"{V1}/jobs", headers=bearer(second)).status_code == 401  # no overlap: at once
    assert api.get(f"{V1}/jobs", headers=bearer(third)).status_code == 200

    before = last_seq(nats_server.url)
    assert api.delete(f"{V1}/admin/domains/rotating/tokens/{token_id}", headers=AUTH).status_code == 200
    assert api.get(f"{V1}/jobs", headers=bearer(first)).status_code == 401
    assert api.delete(f"{V1}/admin/domains/rotating/tokens/{token_id}", headers=AUTH).status_code == 409
    assert last_seq(nats_server.url) == before + 1  # the refused second revoke appended nothing

    extra = api.post(f"{V1}/admin/domains/rotating/tokens", json={"name": "ci"}, headers=AUTH)
    assert (
        extra.status_code == 201 and api.get(f"{V1}/jobs", headers=bearer(extra.json()["token"])).is_success
    )
    tokens = api.get(f"{V1}/admin/domains/rotating/tokens", headers=AUTH).json()
    assert [t["name"] for t in tokens] == ["first", "first", "first", "ci"]
    assert tokens[0]["revoked_at"] and tokens[1]["expires_at"] and tokens[2]["last_used_at"]


def test_disabled_and_deleted_domains(api: TestClient) -> None:
    token = make_domain(api, "short-lived")
    r = api.post(f"{V1}/admin/domains/short-lived/disable", json={"reason": "unpaid"}, headers=AUTH)
    assert r.json()["status"] == "disabled"
    assert api.get(f"{V1}/jobs", headers=bearer(token)).status_code == 403
    assert api.post(f"{V1}/admin/domains/short-lived/enable", headers=AUTH).json()["status"] == "active"
    assert api.get(f"{V1}/jobs", headers=bearer(token)).status_code == 200
    assert api.delete(f"{V1}/admin/domains/short-lived", headers=AUTH).json()["status"] == "deleted"
    assert api.get(f"{V1}/jobs", headers=bearer(token)).status_code == 401
    assert api.get(f"{V1}/jobs", headers={**AUTH, "X-Domain": "short-lived"}).status_code == 404
    assert api.get(f"{V1}/admin/domains/short-lived", headers=AUTH).status_code == 404
    assert "short-lived" not in [d["name"] for d in api.get(f"{V1}/admin/domains", headers=AUTH).json()]


def _register_worker(url: str, domain: str, worker_id: str) -> None:
    async def append() -> None:
        nc = await nats.connect(url)
        store = EventStore(nc, nc.jetstream())
        event = Registered(domain=domain, actor="test", worker_id=worker_id, max_concurrency=1)
        scope = subjects.worker_all(domain, worker_id)
        await store.append(Append(subjects.worker(domain, worker_id, event.type), event, 0, scope))
        await nc.close()

    asyncio.run(append())


def test_every_route_and_stream_refuses_another_domains_token(
    api: TestClient, nats_server: NatsServer
) -> None:
    """Enumerated from the app itself, so a route added later cannot be forgotten here."""
    a, b = make_domain(api, "mx-a"), make_domain(api, "mx-b")
    ids = {
        "job_id": api.post(f"{V1}/jobs", json=shell("b-job"), headers=bearer(b)).json()["id"],
        "schedule_id": api.post(
            f"{V1}/schedules", json={"name": "b-s", "interval_s": 3600, "job": shell()}, headers=bearer(b)
        ).json()["id"],
        "name": "b-template",
        "version": "1",
        "worker_id": "b-worker",
    }
    assert api.put(f"{V1}/templates/b-template", json={"job": shell()}, headers=bearer(b)).status_code in (
        200,
        201,
    )
    _register_worker(nats_server.url, "mx-b", "b-worker")
    deadline = time.monotonic() + 10
    while api.get(f"{V1}/workers/b-worker", headers=bearer(b)).status_code != 200:
        assert time.monotonic() < deadline, "the worker never reached the read model"
        time.sleep(0.05)
    own_job = api.post(f"{V1}/jobs", json=shell("a-job"), headers=bearer(a)).json()["id"]
    b_template_before = api.get(f"{V1}/templates/b-template", headers=bearer(b)).json()
    seq_before = last_seq(nats_server.url)

    # A valid body where the route needs one: a 422 would say nothing about the domain check.
    bodies = {"backfill": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T03:00:00Z"}}
    checked = set()
    for path, operations in api.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if not path.startswith(V1) or path.startswith(f"{V1}/admin") or "{" not in path:
            continue
        for method in (m.upper() for m in operations):
            if method == "PUT":  # PUT /templates/{name} writes the caller's own namespace
                continue
            url = path.format(**ids)
            body = None if method in ("GET", "DELETE") else bodies.get(path.rsplit("/", 1)[1], {})
            r = api.request(method, url, headers=bearer(a), json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            if url.endswith("/logs"):
                follow = api.get(url, params={"follow": "true"}, headers=bearer(a))
                assert follow.status_code == 404, (path, "follow")
            checked.add((method, path))
    assert len(checked) >= 20, checked
    assert last_seq(nats_server.url) == seq_before  # refused requests appended nothing
    # Refused requests changed nothing of B's.
    assert api.get(f"{V1}/templates/b-template", headers=bearer(b)).json() == b_template_before
    for listing in ("/jobs", "/schedules", "/templates", "/workers"):
        text = api.get(V1 + listing, headers=bearer(a)).text
        assert all(str(v) not in text for k, v in ids.items() if k != "version"), (listing, text)
    # The event stream of A carries A's events and none of B's.
    seen = []
    with api.stream("GET", f"{V1}/events", params={"since": 1}, headers=bearer(a)) as stream:
        for line in stream.iter_lines():
            seen.append(line)
            if own_job in line or len(seen) > 200:
                break
    assert any(own_job in line for line in seen) and not any("mx-b" in line for line in seen)
