"""Operators drain, disable and enable workers through the REST API (real nats-server, the API
in-process, the dispatcher and workers in this loop): recorded as `state_changed` events,
obeyed by the dispatcher's placement, scoped to the caller's domain."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from events import subjects
from events.job import JobSpec, JobStatus, ShellExecutor
from events.store import EventStore
from events.worker import Registered, StateChanged
from services.runtime.nats_server import NatsServer
from services.worker.settings import SettingsError, from_env
from tests.integration.harness import Engine, engine
from tests.integration.inprocess import AUTH, api_client
from tests.integration.served import served_api

V1 = "/api/v1"


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("worker-admin")) as client:
        yield client


def shell(script: str) -> JobSpec:
    return JobSpec(name="t", executor=ShellExecutor(script=script))


def open_domain(api: TestClient, e: Engine) -> tuple[dict[str, str], str]:
    """The engine's domain, created through the API: the admin's headers for it, and its token."""
    r = api.post(f"{V1}/admin/domains", json={"name": e.domain, "description": "t"}, headers=AUTH)
    assert r.status_code == 201, r.text
    return {**AUTH, "X-Domain": e.domain}, str(r.json()["token"]["token"])


def post(api: TestClient, path: str, headers: dict[str, str], status: int = 200, **kw: Any) -> Any:
    r = api.post(f"{V1}{path}", headers=headers, **kw)
    assert r.status_code == status, (path, r.status_code, r.text)
    return r.json()


async def worker_events(store: EventStore, domain: str, worker_id: str) -> list[Any]:
    return [s.event for s in await store.read(subjects.worker_all(domain, worker_id))]


async def shown(api: TestClient, headers: dict[str, str], worker_id: str, admin_state: str) -> dict[str, Any]:
    """The worker view once the projection shows `admin_state` (a registration lands on its own)."""
    deadline = time.monotonic() + 10
    while True:
        r = api.get(f"{V1}/workers/{worker_id}", headers=headers)
        if r.status_code == 200 and r.json()["admin_state"] == admin_state:
            body: dict[str, Any] = r.json()
            return body
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.1)


async def test_a_disabled_worker_gets_no_job_until_enabled(
    api: TestClient, nats_server: NatsServer, store: EventStore
) -> None:
    async with engine(nats_server.url, store) as e:
        headers, _ = open_domain(api, e)
        e.start_dispatcher()
        e.start_worker("w1")
        await e.ready("w1")
        await shown(api, headers, "w1", "active")

        view = post(api, "/workers/w1/disable", headers, json={"reason": "kernel update"})
        assert view["id"] == "w1" and view["admin_state"] == "disabled" and view["status"] == "active"
        job_id = await e.submit(shell("true"))
        held = await e.wait(job_id, lambda s: s.pending_reason is not None)
        assert held.status is JobStatus.PENDING
        assert "w1 (disabled)" in (held.pending_reason or ""), held.pending_reason
        await asyncio.sleep(1.0)  # a few dispatcher rounds: still not placed
        assert (await e.state(job_id)).status is JobStatus.PENDING

        # Asking for the state it is in appends nothing; draining a disabled worker is refused.
        before = await worker_events(store, e.domain, "w1")
        assert post(api, "/workers/w1/disable", headers)["admin_state"] == "disabled"
        refused = post(api, "/workers/w1/drain", headers, status=409)
        assert "enable it first" in refused["detail"]
        assert await worker_events(store, e.domain, "w1") == before

        assert post(api, "/workers/w1/enable", headers)["admin_state"] == "active"
        done = await e.wait(job_id, lambda s: s.terminal)
        assert done.status is JobStatus.SUCCEEDED and done.worker_id == "w1"

    history = await worker_events(store, e.domain, "w1")
    changes = [ev for ev in history if isinstance(ev, StateChanged)]
    assert [(c.state, c.reason, c.actor) for c in changes] == [
        ("disabled", "kernel update", "admin"),
        ("active", "", "admin"),
    ]
    # Causation: the worker's event before it; correlation: the worker.
    ids = [ev.id for ev in history]
    for change in changes:
        assert change.correlation_id == "w1"
        assert change.causation_id == ids[ids.index(change.id) - 1]


async def test_drain_lets_the_running_job_finish_and_places_no_new_one(
    api: TestClient, nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    async with engine(nats_server.url, store) as e:
        headers, _ = open_domain(api, e)
        e.start_dispatcher()
        e.start_worker("w1", max_concurrency=2)
        await e.ready("w1")
        await shown(api, headers, "w1", "active")
        running = await e.submit(shell(f"while [ ! -e {go} ]; do sleep 0.05; done"))
        await e.wait(running, lambda s: s.status is JobStatus.RUNNING)

        view = post(api, "/workers/w1/drain", headers)
        assert view["admin_state"] == "draining" and view["active_jobs"] == 1
        later = await e.submit(shell("true"))
        held = await e.wait(later, lambda s: s.pending_reason is not None)
        assert "w1 (draining)" in (held.pending_reason or ""), held.pending_reason
        assert (await e.state(running)).status is JobStatus.RUNNING  # it runs on

        go.write_text("1")
        assert (await e.wait(running, lambda s: s.terminal)).status is JobStatus.SUCCEEDED
        await asyncio.sleep(1.0)
        assert (await e.state(later)).status is JobStatus.PENDING
        # Drained, and still registered (and beating).
        drained = await shown(api, headers, "w1", "draining")
        assert drained["status"] == "active" and drained["active_jobs"] == 0
        listed = api.get(f"{V1}/workers", headers=headers).json()
        assert [(w["id"], w["admin_state"]) for w in listed] == [("w1", "draining")]

        post(api, "/workers/w1/enable", headers)
        assert (await e.wait(later, lambda s: s.terminal)).status is JobStatus.SUCCEEDED


async def test_unknown_workers_and_other_domains_are_404(
    api: TestClient, nats_server: NatsServer, store: EventStore
) -> None:
    async with engine(nats_server.url, store) as e:
        headers, _ = open_domain(api, e)
        e.start_worker("w1")
        await e.ready("w1")
        await shown(api, headers, "w1", "active")
        for action in ("drain", "disable", "enable"):
            for worker_id in ("nope", "bad.id"):
                r = api.post(f"{V1}/workers/{worker_id}/{action}", headers=headers)
                assert r.status_code == 404, (action, worker_id, r.text)

        other = Engine(nats_server.url, store)
        _, other_token = open_domain(api, other)
        before = await worker_events(store, e.domain, "w1")
        for extra in ({}, {"X-Domain": e.domain}):
            for action in ("drain", "disable", "enable"):
                r = api.post(
                    f"{V1}/workers/w1/{action}", headers={"Authorization": f"Bearer {other_token}", **extra}
                )
                assert r.status_code == 404, (action, extra, r.text)
        assert await worker_events(store, e.domain, "w1") == before
        assert (await shown(api, headers, "w1", "active"))["admin_state"] == "active"


async def test_worker_state_at_start_and_kept_over_a_restart(
    api: TestClient, nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_STATE", "disabled")
    assert from_env(nats_server.url, "w1").start_state == "disabled"
    monkeypatch.setenv("WORKER_STATE", "paused")
    with pytest.raises(SettingsError, match="WORKER_STATE must be one of active, draining, disabled"):
        from_env(nats_server.url, "w1")
    monkeypatch.delenv("WORKER_STATE")
    assert from_env(nats_server.url, "w1").start_state is None

    async with engine(nats_server.url, store) as e:
        headers, _ = open_domain(api, e)
        e.start_dispatcher()
        e.start_worker("w1", start_state="disabled")
        await e.ready("w1")
        job_id = await e.submit(shell("true"))
        held = await e.wait(job_id, lambda s: s.pending_reason is not None)
        assert "w1 (disabled)" in (held.pending_reason or ""), held.pending_reason
        assert (await shown(api, headers, "w1", "disabled"))["status"] == "active"
        [registered] = await worker_events(store, e.domain, "w1")
        assert isinstance(registered, Registered) and registered.admin_state == "disabled"

        # A restart without WORKER_STATE keeps what was set; an explicit one sets it.
        await e.stop("w1")
        e.start_worker("w1")
        await e.ready("w1")
        await asyncio.sleep(1.0)
        assert (await e.state(job_id)).status is JobStatus.PENDING
        assert (await shown(api, headers, "w1", "disabled"))["status"] == "active"
        await e.stop("w1")
        e.start_worker("w1", start_state="active")
        await e.ready("w1")
        assert (await e.wait(job_id, lambda s: s.terminal)).status is JobStatus.SUCCEEDED
        await shown(api, headers, "w1", "active")


async def cli(url: str, token: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, "--url", url, "--token", token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return await proc.wait(), out.decode()


async def test_the_cli_drains_disables_and_enables(
    api: TestClient, nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    async with engine(nats_server.url, store) as e:
        headers, token = open_domain(api, e)
        e.start_worker("w1")
        await e.ready("w1")
        await shown(api, headers, "w1", "active")
        with served_api(nats_server.url, tmp_path) as url:
            rc, out = await cli(url, token, "workers", "drain", "w1", "--reason", "maintenance")
            assert (rc, out.strip()) == (0, "worker w1: draining"), out
            rc, out = await cli(url, token, "workers", "disable", "w1", "--json")
            assert rc == 0 and json.loads(out)["admin_state"] == "disabled", out
            rc, out = await cli(url, token, "workers", "ls")
            assert rc == 0 and "active (disabled)" in out, out
            rc, out = await cli(url, token, "workers", "drain", "w1")
            assert rc != 0 and "enable it first" in out, out
            rc, out = await cli(url, token, "workers", "enable", "w1")
            assert (rc, out.strip()) == (0, "worker w1: active"), out
            rc, out = await cli(url, token, "workers", "enable", "nope")
            assert rc != 0 and "not found" in out, out
    states = [ev.state for ev in await worker_events(store, e.domain, "w1") if isinstance(ev, StateChanged)]
    assert states == ["draining", "disabled", "active"]
