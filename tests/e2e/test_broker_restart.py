"""`up` supervises its nats-server: a SIGKILLed server comes back on the same store and logins,
the services reconnect by themselves, and a server that keeps dying stops `up`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import nats
import pytest

from services.cli.admin_commands import nats_login_url
from services.runtime.ports import free_port
from tests.e2e.up import Up

pytestmark = pytest.mark.slow
PASSWORD = "e2e-service-password-0123456789"


def _until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def _ready(up: Up) -> bool:
    try:
        return httpx.get(f"{up.api_url}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _can_login(url: str) -> bool:
    async def attempt() -> bool:
        try:
            nc = await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)
        except Exception:
            return False
        await nc.close()
        return True

    return asyncio.run(attempt())


def _run_job(up: Up) -> str:
    with up.client() as c:
        made = c.post("/jobs", json={"name": "hi", "executor": {"type": "shell", "script": "echo hi"}})
        assert made.status_code == 201, made.text
        job_id = made.json()["id"]
        for _ in range(300):
            status = str(c.get(f"/jobs/{job_id}").json()["status"])
            if status in ("succeeded", "failed", "timed_out", "cancelled"):
                return status
            time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _server_pid(data: Path) -> int:
    return int((data / "nats.pid").read_text().strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _up(data: Path, monkeypatch: pytest.MonkeyPatch, workers: str) -> Up:
    monkeypatch.setenv("NATS_SERVICE_PASSWORD", PASSWORD)
    args = ("--port", str(free_port()), "--nats-port", str(free_port()), "--workers", workers)
    up = Up(data, *args).wait_banner()
    monkeypatch.delenv("NATS_SERVICE_PASSWORD")
    return up


def test_a_killed_server_is_restarted_and_everything_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    up = _up(data, monkeypatch, "1")
    service = up.nats_url.replace("nats://", f"nats://jobstream:{PASSWORD}@")
    try:
        blue = nats_login_url(up.make_domains("blue")["blue"], up.nats_url)
        _until("blue's token logs in", lambda: _can_login(blue), 10)
        assert _run_job(up) == "succeeded"
        _until("ready", lambda: _ready(up), 10)

        old = _server_pid(data)
        os.kill(old, signal.SIGKILL)
        _until("a new server", lambda: _alive(_server_pid(data)) and _server_pid(data) != old, 20)
        _until("ready again", lambda: _ready(up), 30)
        out = up.output()
        assert "nats-server exited (signal 9); restarted it on the same store (restart 1 of 5 in 60 s)" in out

        assert _run_job(up) == "succeeded"  # api, dispatcher and worker reconnected with their login
        # Logins are what they were: the service login, the token made before; others refused.
        assert _can_login(service) and _can_login(blue)
        assert not _can_login(up.nats_url.replace("nats://", "nats://jobstream:wrong@"))
        # broker-auth reloads the new server: a token made after the restart gets its login.
        green = nats_login_url(up.make_domains("green")["green"], up.nats_url)
        _until("green's token logs in", lambda: _can_login(green), 15)
    finally:
        assert up.stop() == 0, up.output()


def test_a_server_that_keeps_dying_stops_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    up = _up(data, monkeypatch, "0")
    deadline = time.monotonic() + 40
    while up.proc.poll() is None and time.monotonic() < deadline:
        pid = _server_pid(data)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        _until("a new server, or up gone", lambda p=pid: up.proc.poll() is not None or _server_pid(data) != p)
    code = up.proc.wait(30)
    out = up.output()
    assert code != 0, out
    assert "nats-server exited (signal 9) and keeps crashing (5 restarts in 60 s); stopping" in out, out
    assert "jobstream stopped" in out


async def _replicas(url: str) -> dict[str, int]:
    nc = await nats.connect(servers=url.split(","), max_reconnect_attempts=0, connect_timeout=5)
    try:
        js = nc.jetstream()
        return {
            name: (await js.stream_info(name)).config.num_replicas or 1 for name in ("EVENTS", "HEARTBEATS")
        }
    finally:
        await nc.close()


def test_up_runs_a_three_node_cluster_and_rides_out_a_killed_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("NATS_SERVICE_PASSWORD", PASSWORD)
    monkeypatch.delenv("JOBSTREAM_REPLICAS", raising=False)
    args = ("--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "1", "--cluster", "3")
    up = Up(data, *args).wait_banner()
    monkeypatch.delenv("NATS_SERVICE_PASSWORD")
    try:
        assert up.nats_url.count("nats://") == 3
        service = ",".join(
            u.replace("nats://", f"nats://jobstream:{PASSWORD}@") for u in up.nats_url.split(",")
        )
        assert asyncio.run(_replicas(service)) == {"EVENTS": 3, "HEARTBEATS": 3}
        assert "sync_interval: always" in (data / "nats-n2-server.conf").read_text()
        assert _run_job(up) == "succeeded"
        old = int((data / "nats-n1.pid").read_text())
        os.kill(old, signal.SIGKILL)
        assert _run_job(up) == "succeeded"  # two of three nodes hold the quorum
        _until("n1 back", lambda: "nats-server n1 exited (signal 9); restarted it" in up.output(), 20)
        _until("ready", lambda: _ready(up), 30)
        assert _run_job(up) == "succeeded"
    finally:
        assert up.stop() == 0, up.output()
