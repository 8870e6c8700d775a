"""`jobstream up`: one command starts everything; ports; restart on the same data dir keeps all."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import time
from pathlib import Path

import httpx
import nats
import pytest

from services.cli.admin_commands import nats_login_url
from services.runtime.ports import free_port
from tests.e2e.up import Up

pytestmark = pytest.mark.slow


async def _can_connect(url: str) -> bool:
    try:
        nc = await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)
    except Exception:
        return False
    await nc.close()
    return True


def _wait_done(c: httpx.Client, job_id: str) -> dict[str, object]:
    for _ in range(300):
        job = c.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_up_runs_jobs_and_a_restart_keeps_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    args = ("--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "1")
    password = "e2e-service-password-0123456789"
    monkeypatch.setenv("NATS_SERVICE_PASSWORD", password)
    up = Up(data, *args).wait_banner()
    monkeypatch.delenv("NATS_SERVICE_PASSWORD")
    try:
        assert (data / "admin_token").read_text().strip() == up.token
        # The banner shows the server without the service login, and joins workers with a token.
        assert "@" not in up.nats_url and password not in up.output()
        assert f"NATS_URL={up.nats_url} WORKER_DOMAIN=<domain> WORKER_DOMAIN_TOKEN=jst_" in up.output()
        # The service password is nowhere on disk: the server's config has only its bcrypt hash.
        assert not (data / "nats_password").exists()
        assert password not in (data / "nats-auth.conf").read_text()
        # The embedded server takes only jobstream's own service login.
        service = up.nats_url.replace("nats://", f"nats://jobstream:{password}@")
        assert asyncio.run(_can_connect(service)) is True
        assert asyncio.run(_can_connect(up.nats_url)) is False
        assert asyncio.run(_can_connect(up.nats_url.replace("nats://", "nats://jobstream:wrong@"))) is False
        with up.client() as c:
            job = c.post(
                "/jobs", json={"name": "hi", "executor": {"type": "shell", "script": "echo hi"}}
            ).json()
            assert _wait_done(c, job["id"])["status"] == "succeeded"
            events_before = c.get(f"/jobs/{job['id']}/events").json()
    finally:
        assert up.stop() == 0
    assert "jobstream stopped" in up.output()

    again = Up(data, *args, generated_password=True).wait_banner()
    try:
        assert again.token == up.token
        # Without NATS_SERVICE_PASSWORD each start makes a fresh one: the old one is dead.
        assert asyncio.run(_can_connect(service)) is False
        with again.client() as c:
            kept = c.get(f"/jobs/{job['id']}").json()
            assert kept["status"] == "succeeded"
            assert c.get(f"/jobs/{job['id']}/events").json() == events_before
            assert [line["line"] for line in c.get(f"/jobs/{job['id']}/logs").json()["items"]] == ["hi"]
            second = c.post("/jobs", json={"name": "again", "executor": {"type": "shell", "script": "true"}})
            assert _wait_done(c, second.json()["id"])["status"] == "succeeded"
    finally:
        assert again.stop() == 0


def test_a_second_up_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Up(
        data, "--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "1"
    ).wait_banner()
    try:
        t0 = time.monotonic()
        second = Up(data, "--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "1")
        assert second.proc.wait(30) == 2, second.output()
        assert time.monotonic() - t0 < 15
        out = second.output()
        assert f"pid {first.proc.pid}" in out and first.api_url in out and first.nats_url in out, out
        assert "jobstream is up" not in out
        owner = json.loads((data / "up.lock").read_text())
        assert owner == {"pid": first.proc.pid, "api_url": first.api_url, "nats_url": first.nats_url}
        # The first system is untouched: its worker is active and it still runs jobs.
        with first.client() as c:
            job = c.post("/jobs", json={"name": "after", "executor": {"type": "shell", "script": "true"}})
            assert _wait_done(c, job.json()["id"])["status"] == "succeeded"
            workers = c.get("/workers").json()
            items = workers["items"] if isinstance(workers, dict) else workers
            local = [w for w in items if w["id"] == "local-1"]
            assert local and local[0]["status"] == "active", workers
    finally:
        first.proc.kill()  # SIGKILL: no clean shutdown, and so no chance to release the lock
        first.proc.wait(30)
    # The lock died with the process: a new `up` on the same dir starts fine.
    third = Up(data, "--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "1")
    try:
        third.wait_banner()
        with third.client() as c:
            job = c.post("/jobs", json={"name": "third", "executor": {"type": "shell", "script": "true"}})
            assert _wait_done(c, job.json()["id"])["status"] == "succeeded"
    finally:
        assert third.stop() == 0


def test_explicit_port_that_is_taken_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = Up(tmp_path / "data", "--port", str(port))
        assert up.proc.wait(30) == 2
        assert f"API port {port} on 127.0.0.1 is already in use" in up.output()


def test_taken_default_port_is_replaced_by_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", 8000))
            busy.listen()
        except OSError:
            pass  # someone else holds 8000: the default is taken either way
        up = Up(tmp_path / "data", "--nats-port", str(free_port())).wait_banner()
        try:
            assert not up.api_url.endswith(":8000")
            assert httpx.get(f"{up.api_url}/health").status_code == 200
        finally:
            assert up.stop() == 0


def test_a_domain_token_reads_only_its_domain_at_the_broker(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", "--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "0")
    up.wait_banner()
    try:
        tokens = up.make_domains("blue", "green")
        blue_url = nats_login_url(tokens["blue"], up.nats_url)  # what `jobstream domains nats-url` prints
        result = asyncio.run(_broker_matrix(up, blue_url))
        assert "ev.blue.job" in result["own"] and set(result["own"]) <= {"ev.blue.job", "ev.blue.domain"}, (
            result
        )
        errors = [e.lower() for e in result["errors"]]  # type: ignore[attr-defined]
        assert result["other"] == [] and any('subscription to "ev.green.>"' in e for e in errors), result
        assert result["publish_refused"], result
        assert result["closed_after_revoke_s"] is not None and result["closed_after_revoke_s"] < 5, result
    finally:
        assert up.stop() == 0


async def _broker_matrix(up: Up, blue_url: str) -> dict[str, object]:
    errors: list[str] = []
    disconnected = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    async def on_disconnect() -> None:
        disconnected.set()

    # The broker learns new logins within about a second of the domain's creation.
    nc = None
    for _ in range(50):
        try:
            nc = await nats.connect(blue_url, error_cb=on_error, disconnected_cb=on_disconnect,
                                    max_reconnect_attempts=0, allow_reconnect=False)  # fmt: skip
            break
        except Exception:
            await asyncio.sleep(0.1)
    assert nc is not None, "the domain token never got a broker login"
    own: list[str] = []
    other: list[str] = []
    await nc.subscribe("ev.blue.>", cb=functools.partial(_note, own))
    await nc.subscribe("ev.green.>", cb=functools.partial(_note, other))
    await nc.flush()
    with up.client() as c:
        for name in ("blue", "green"):
            job = {"name": "j", "executor": {"type": "shell", "script": "true"}}
            assert c.post("/jobs", json=job, headers={"X-Domain": name}).status_code == 201
    await asyncio.sleep(1.0)
    before = len(errors)
    await nc.publish("ev.blue.job.fake.submitted", b"{}")  # writing events is not a reader's right
    await nc.flush()
    await asyncio.sleep(0.3)
    publish_refused = len(errors) > before
    with up.client() as c:
        token_id = blue_url.split("jst_", 1)[1].split(":", 1)[0]
        assert c.delete(f"/admin/domains/blue/tokens/{token_id}").status_code == 200
    t0 = asyncio.get_running_loop().time()
    closed = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while not (nc.is_closed or disconnected.is_set()):
                await asyncio.sleep(0.05)
            closed = asyncio.get_running_loop().time() - t0
    with contextlib.suppress(Exception):
        await nc.close()
    return {"own": sorted(set(own)), "other": other, "errors": errors, "publish_refused": publish_refused,
            "closed_after_revoke_s": closed}  # fmt: skip


async def _note(into: list[str], msg: nats.aio.msg.Msg) -> None:
    into.append(".".join(msg.subject.split(".")[:3]))


def test_ports_are_kept_across_restarts_and_a_taken_one_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Up(data, "--workers", "0").wait_banner()
    try:
        nats_port = int(first.nats_url.rsplit(":", 1)[1])
        api_port = int(first.api_url.rsplit(":", 1)[1])
        if nats_port != 4222:  # 4222 was taken (this machine runs another NATS there): said so
            assert "NATS port 4222 is taken" in first.output(), first.output()
    finally:
        assert first.stop() == 0
    again = Up(data, "--workers", "0").wait_banner()
    try:
        assert (again.nats_url, again.api_url) == (first.nats_url, first.api_url)
        assert "note:" not in again.output()
    finally:
        assert again.stop() == 0
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", nats_port))
        squatter.listen()
        third = Up(data, "--workers", "0").wait_banner()
        try:
            assert f"NATS port {nats_port} (used last time) is taken" in third.output(), third.output()
            assert int(third.nats_url.rsplit(":", 1)[1]) != nats_port
            assert third.api_url == first.api_url and api_port > 0
        finally:
            assert third.stop() == 0
