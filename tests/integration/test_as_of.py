"""Time travel (`?as_of_seq=N`) against a real nats-server: past states folded from the log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient

from events import subjects
from events.ids import new_id
from events.job import AnyJobEvent, JobSpec, ShellExecutor, Submitted, decide_cancel, decide_hold, evolve
from events.store import Append, EventStore, job_append
from events.streams import provision
from events.worker import Registered, WentOffline
from projections.projector import Projector
from services.api import as_of
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, TOKEN, api_client, last_seq
from tests.integration.served import served_api

V1 = "/api/v1"
DOMAIN = "asof"  # its own domain: other tests sharing the server see none of this
H = {**AUTH, "X-Domain": DOMAIN}


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("as-of-api")) as client:
        r = client.post(f"{V1}/admin/domains", json={"name": DOMAIN}, headers=AUTH)
        assert r.status_code == 201, r.text
        yield client


def job_body(**extra: Any) -> dict[str, Any]:
    return {"name": "tt", "executor": {"type": "shell", "script": "true"}, "tags": ["nowhere"], **extra}


def test_a_job_as_of_each_sequence_is_its_past_state(api: TestClient, nats_server: NatsServer) -> None:
    before = last_seq(nats_server.url)
    job = api.post(f"{V1}/jobs", json=job_body(), headers=H).json()
    submitted_at = job["last_seq"]
    live_then = api.get(f"{V1}/jobs/{job['id']}", headers=H).json()
    api.post(f"{V1}/jobs", json=job_body(), headers=H)  # another aggregate's event in between
    cancelled = api.post(f"{V1}/jobs/{job['id']}/cancel", json={"reason": "enough"}, headers=H).json()
    assert cancelled["status"] == "cancelled" and cancelled["last_seq"] > submitted_at

    then = api.get(f"{V1}/jobs/{job['id']}", params={"as_of_seq": cancelled["last_seq"] - 1}, headers=H)
    assert then.status_code == 200, then.text
    assert then.json() == live_then  # same shape and content as the live answer was at that time
    now = api.get(f"{V1}/jobs/{job['id']}", params={"as_of_seq": cancelled["last_seq"]}, headers=H)
    assert now.json() == api.get(f"{V1}/jobs/{job['id']}", headers=H).json()
    assert now.json()["status"] == "cancelled" and now.json()["last_seq"] == cancelled["last_seq"]

    early = api.get(f"{V1}/jobs/{job['id']}", params={"as_of_seq": before or 1}, headers=H)
    assert early.status_code == 404 and "did not exist at sequence" in early.json()["detail"]


def test_bad_sequences_are_422_and_other_domains_404(api: TestClient) -> None:
    job = api.post(f"{V1}/jobs", json=job_body(), headers=H).json()
    path = f"{V1}/jobs/{job['id']}"
    for bad in ("0", "-3", "soon"):
        r = api.get(path, params={"as_of_seq": bad}, headers=H)
        assert r.status_code == 422 and "as_of_seq" in str(r.json()["detail"]), (bad, r.text)
    future = api.get(path, params={"as_of_seq": job["last_seq"] + 10_000}, headers=H)
    assert future.status_code == 422 and "past the last sequence" in future.json()["detail"]
    created = api.post(f"{V1}/admin/domains", json={"name": "as-of-elsewhere"}, headers=H)
    assert created.status_code == 201, created.text
    other = {"Authorization": f"Bearer {created.json()['token']['token']}"}
    r = api.get(path, params={"as_of_seq": job["last_seq"]}, headers=other)
    assert r.status_code == 404
    assert api.get(f"{V1}/jobs/bad.id", params={"as_of_seq": 1}, headers=H).status_code == 404


def test_a_schedule_as_of_before_its_pause_is_active(api: TestClient) -> None:
    body = {"name": "tt-sched", "cron": "0 3 * * *", "job": job_body()}
    created = api.post(f"{V1}/schedules", json=body, headers=H).json()
    paused = api.post(f"{V1}/schedules/{created['id']}/pause", json={"note": "x"}, headers=H).json()
    path = f"{V1}/schedules/{created['id']}"
    then = api.get(path, params={"as_of_seq": created["last_seq"]}, headers=H).json()
    assert then == created and then["status"] == "active"
    now = api.get(path, params={"as_of_seq": paused["last_seq"]}, headers=H).json()
    assert now == api.get(path, headers=H).json() and now["status"] == "paused"
    assert api.get(path, params={"as_of_seq": created["last_seq"] - 1}, headers=H).status_code == 404
    assert api.delete(path, headers=H).status_code in (200, 204)  # the api fixture is shared


def _append(url: str, items: list[Append]) -> list[int]:
    async def run() -> list[int]:
        nc = await connect(url, "probe", max_reconnect_attempts=0)
        try:
            store = EventStore(nc, jetstream(nc))
            return [(await store.append(item)).seq for item in items]
        finally:
            await nc.close()

    return asyncio.run(run())


def test_a_worker_as_of_before_it_went_offline_is_active(api: TestClient, nats_server: NatsServer) -> None:
    wid = "tt-worker"
    reg = Registered(domain=DOMAIN, actor="test", worker_id=wid, tags=["a"], executors=["shell"])
    off = WentOffline(domain=DOMAIN, actor="test", worker_id=wid, reason="no heartbeat")
    seqs = _append(
        nats_server.url,
        [Append(subjects.worker(DOMAIN, wid, e.type), e) for e in (reg, off)],
    )
    path = f"{V1}/workers/{wid}"
    then = api.get(path, params={"as_of_seq": seqs[0]}, headers=H)
    assert then.status_code == 200, then.text
    assert then.json()["status"] == "active" and then.json()["tags"] == ["a"]
    deadline = time.monotonic() + 10
    while (r := api.get(path, headers=H)).json().get("status") != "offline" and time.monotonic() < deadline:
        time.sleep(0.05)  # appended behind the API's back: wait for the read model
    live = r.json()
    assert set(then.json()) == set(live) and live["status"] == "offline"  # the live route's keys
    assert api.get(path, params={"as_of_seq": seqs[1]}, headers=H).json()["status"] == "offline"
    assert api.get(path, params={"as_of_seq": seqs[0] - 1}, headers=H).status_code == 404


@pytest.fixture(scope="module")
def api_url(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API on a loopback port, for the CLI in a subprocess."""
    with served_api(nats_server.url, tmp_path_factory.mktemp("as-of-cli")) as url:
        yield url


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBSTREAM_URL": url, "JOBSTREAM_TOKEN": TOKEN, "JOBSTREAM_DOMAIN": DOMAIN}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_jobs_show_at_a_sequence(api: TestClient, api_url: str) -> None:
    job = api.post(f"{V1}/jobs", json=job_body(), headers=H).json()
    cancelled = api.post(f"{V1}/jobs/{job['id']}/cancel", json={}, headers=H).json()
    then = cli(api_url, "jobs", "show", job["id"], "--at", str(job["last_seq"]), "--json")
    assert then.returncode == 0, then.stderr
    assert (
        json.loads(then.stdout)["status"] == "pending"
        and json.loads(then.stdout)["last_seq"] == job["last_seq"]
    )
    table = cli(api_url, "jobs", "show", job["id"], "--at", str(cancelled["last_seq"]))
    assert table.returncode == 0 and "cancelled" in table.stdout, table.stdout + table.stderr
    assert f"as of sequence {cancelled['last_seq']}" in table.stdout
    early = cli(api_url, "jobs", "show", job["id"], "--at", str(job["last_seq"] - 1))
    assert early.returncode != 0 and early.stderr.startswith("error:") and "did not exist" in early.stderr
    bad = cli(api_url, "jobs", "show", job["id"], "--at", "0")
    assert bad.returncode != 0 and "--at" in bad.stderr


def _served(api_url: str) -> httpx.Client:
    """The CLI's own API (its read model, not the TestClient's), for set-up the CLI then reads."""
    return httpx.Client(base_url=f"{api_url}{V1}", headers=H, timeout=30)


def test_cli_schedules_show_at_a_sequence(api_url: str) -> None:
    with _served(api_url) as http:
        body = {"name": "tt-cli-sched", "cron": "0 3 * * *", "job": job_body()}
        created = http.post("/schedules", json=body).json()
        paused = http.post(f"/schedules/{created['id']}/pause", json={"note": "x"}).json()
        try:
            then = cli(
                api_url, "schedules", "show", created["id"], "--at", str(created["last_seq"]), "--json"
            )
            assert then.returncode == 0, then.stderr
            assert json.loads(then.stdout)["status"] == "active"
            assert json.loads(then.stdout)["last_seq"] == created["last_seq"]
            # By name too, and as a table that says which sequence it shows.
            table = cli(api_url, "schedules", "show", "tt-cli-sched", "--at", str(paused["last_seq"]))
            assert table.returncode == 0 and "paused" in table.stdout, table.stdout + table.stderr
            assert f"as of sequence {paused['last_seq']}" in table.stdout
            early = cli(api_url, "schedules", "show", created["id"], "--at", str(created["last_seq"] - 1))
            assert early.returncode != 0 and "did not exist" in early.stderr, early.stderr
            future = cli(
                api_url, "schedules", "show", created["id"], "--at", str(paused["last_seq"] + 10_000)
            )
            assert future.returncode != 0 and "past the last sequence" in future.stderr, future.stderr
            bad = cli(api_url, "schedules", "show", created["id"], "--at", "0")
            assert bad.returncode != 0 and "--at" in bad.stderr
        finally:
            http.delete(f"/schedules/{created['id']}")


def test_cli_workers_show_at_a_sequence(api_url: str, nats_server: NatsServer) -> None:
    wid = "tt-cli-worker"
    reg = Registered(domain=DOMAIN, actor="test", worker_id=wid, tags=["a"], executors=["shell"])
    off = WentOffline(domain=DOMAIN, actor="test", worker_id=wid, reason="no heartbeat")
    seqs = _append(nats_server.url, [Append(subjects.worker(DOMAIN, wid, e.type), e) for e in (reg, off)])
    then = cli(api_url, "workers", "show", wid, "--at", str(seqs[0]), "--json")
    assert then.returncode == 0, then.stderr
    assert json.loads(then.stdout)["status"] == "active" and json.loads(then.stdout)["running"] is None
    table = cli(api_url, "workers", "show", wid, "--at", str(seqs[0]))
    assert table.returncode == 0, table.stderr
    assert (
        f"as of sequence {seqs[0]}" in table.stdout
        and "active" in table.stdout
        and "None" not in table.stdout
    )
    later = cli(api_url, "workers", "show", wid, "--at", str(seqs[1]), "--json")
    assert later.returncode == 0 and json.loads(later.stdout)["status"] == "offline", later.stderr
    early = cli(api_url, "workers", "show", wid, "--at", str(seqs[0] - 1))
    assert early.returncode != 0 and "did not exist" in early.stderr, early.stderr
    bad = cli(api_url, "workers", "show", wid, "--at", "x")
    assert bad.returncode != 0 and "--at" in bad.stderr


async def test_the_read_models_events_and_the_logs_tail_fold_as_the_whole_log(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    """Events the read model has, then events only the log has: every prefix folds as the log."""
    nc = await connect(own_nats_server.url, "test")
    js = jetstream(nc)
    await provision(js)
    store = EventStore(nc, js)
    spec = JobSpec(name="tt", executor=ShellExecutor(script="true"), tags=["nowhere"])
    job_id = new_id()
    seqs = [
        (await store.append(job_append(Submitted(domain="prod", actor="t", job_id=job_id, spec=spec), 0))).seq
    ]
    for reason in ("no worker has tags ['nowhere']", "still none"):
        state, last = await store.read_job("prod", job_id)
        assert state is not None
        held = decide_hold(state, reason)
        assert held is not None
        seqs.append((await store.append(job_append(held, last))).seq)
    projector = Projector(tmp_path / "p.duckdb", nc)
    await projector.start()
    assert await projector.wait_for(seqs[-1], 20)
    await projector.stop()  # the read model stops here: what follows is only in the log
    state, last = await store.read_job("prod", job_id)
    assert state is not None
    seqs.append((await store.append(job_append(decide_cancel(state, "t"), last))).seq)
    con = duckdb.connect(str(tmp_path / "p.duckdb"), read_only=True)
    try:
        for n, at in enumerate(seqs):
            folded, seq = await as_of.fold_as_of(store, con.cursor, "job", "prod", job_id, evolve, at)
            whole = [s for s in await store.read(subjects.job_all("prod", job_id)) if s.seq <= at]
            expected = None
            for stored in whole:
                expected = evolve(expected, cast(AnyJobEvent, stored.event))
            assert folded == expected and seq == at, n
        assert folded is not None and folded.status == "cancelled"
        gone, _ = await as_of.fold_as_of(store, con.cursor, "job", "other", job_id, evolve, seqs[-1])
        assert gone is None  # another domain's caller sees nothing
    finally:
        con.close()
        await nc.close()
