"""Workers that log in with a domain token: they run their domain's jobs and reach nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest

from events.codec import encode
from events.job import Started
from events.store import ReadPage
from services.runtime.ports import free_port
from tests.e2e.up import Up

pytestmark = pytest.mark.slow

WAIT_S = 60.0
SERVICE_PASSWORD = "token-workers-test-service-password"
REVOKE_BOUND_S = 5.0


def _worker(up: Up, token: str, domain: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "NATS_URL", "API_TOKEN")}
    env |= {"WORKER_DOMAIN_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    server = up.nats_url.removeprefix(
        "nats://"
    )  # the banner's URL carries no login: the token is the only one
    argv = [
        sys.executable,
        "-m",
        "services.cli",
        "worker",
        "--nats-url",
        f"nats://{server}",
        "--id",
        worker_id,
    ]
    return subprocess.Popen(
        [*argv, "--domain", domain],
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def _statuses(c: httpx.Client, domain: str, ids: list[str]) -> list[str]:
    return [c.get(f"/jobs/{i}", headers={"X-Domain": domain}).json()["status"] for i in ids]


def test_a_token_worker_runs_its_domain_only_and_reaches_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test checks the broker's view with the service login, so it chooses the password.
    monkeypatch.setenv("NATS_SERVICE_PASSWORD", SERVICE_PASSWORD)
    up = Up(tmp_path / "data", "--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "0")
    up.wait_banner()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tokens = up.make_domains("blue", "green")
        with up.client() as c:
            worker_log = tmp_path / "blue-worker.log"
            procs.append(_worker(up, tokens["blue"], "blue", "w1", worker_log))
            ids: dict[str, list[str]] = {"blue": [], "green": []}
            for domain in ("blue", "green"):
                for i in range(5):
                    job = {
                        "name": f"{domain}-{i}",
                        "executor": {"type": "shell", "script": f"echo {domain}-{i}"},
                    }
                    made = c.post("/jobs", json=job, headers={"X-Domain": domain})
                    assert made.status_code == 201, made.text
                    ids[domain].append(made.json()["id"])
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline and _statuses(c, "blue", ids["blue"]) != ["succeeded"] * 5:
                time.sleep(0.2)
            assert _statuses(c, "blue", ids["blue"]) == ["succeeded"] * 5, worker_log.read_text()
            lines = c.get(f"/jobs/{ids['blue'][0]}/logs", headers={"X-Domain": "blue"}).json()["items"]
            assert [line["line"] for line in lines] == ["blue-0"]
            # Green has no worker of its own: its jobs wait, and blue's worker never saw them.
            assert _statuses(c, "green", ids["green"]) == ["pending"] * 5
            assert "green" not in worker_log.read_text()
            workers = c.get("/workers", headers={"X-Domain": "blue"}).json()
            assert [w["id"] for w in workers] == ["w1"], workers

            # A token of one domain running a worker "in" another gets nowhere, and says why.
            wrong = _worker(up, tokens["blue"], "green", "w2", tmp_path / "wrong.log")
            procs.append(wrong)
            assert wrong.wait(60) != 0
            assert "could not register in domain green" in (tmp_path / "wrong.log").read_text()
            assert _statuses(c, "green", ids["green"]) == ["pending"] * 5

            result = asyncio.run(_rogue(up, tokens["blue"], ids))
            assert result["got_through"] == [], result
            assert result["own_read"] >= 4, result  # submitted, dispatched, started, succeeded
            assert result["green_log_unchanged"], result
            assert "may only be fenced on ev.blue.job.rogue-job.>" in result["probe_error"], result
            key = {"Idempotency-Key": "poison", "X-Domain": "green"}
            green_job = c.post(
                "/jobs", json={"name": "g", "executor": {"type": "shell", "script": "true"}}, headers=key
            )
            assert green_job.status_code == 201, green_job.text  # created, not "already exists"
            assert green_job.json()["domain"] == "green"

            # Revoking the token cuts the worker off at the broker within the stated bound.
            token_id = tokens["blue"].removeprefix("jst_").split("_", 1)[0]
            assert c.delete(f"/admin/domains/blue/tokens/{token_id}").status_code == 200
            revoked_at = time.monotonic()
            while "authorization violation" not in worker_log.read_text().lower():
                assert time.monotonic() - revoked_at < REVOKE_BOUND_S, worker_log.read_text()
                time.sleep(0.05)
            # It keeps trying through a short blip, then stops and says why.
            assert procs[0].wait(60) == 1
            assert "refused worker w1's login" in worker_log.read_text()

            # Rotation: the old token keeps its broker login for the overlap, then loses it.
            old_green = tokens["green"].removeprefix("jst_").split("_", 1)[0]
            overlap_s = 2.0
            closed_after = asyncio.run(_rotated_login_lasts(up, c, tokens["green"], old_green, overlap_s))
            assert overlap_s - 0.5 < closed_after < overlap_s + REVOKE_BOUND_S, closed_after
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        assert up.stop() == 0


async def _rogue(up: Up, token: str, ids: dict[str, list[str]]) -> dict[str, Any]:
    """Everything a blue token must not do, each checked for the broker's refusal."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    token_id, secret = token.removeprefix("jst_").split("_", 1)
    server = up.nats_url.removeprefix("nats://")
    nc = await nats.connect(
        f"nats://jst_{token_id}:{secret}@{server}", error_cb=on_error, inbox_prefix="_INBOX_blue",
        max_reconnect_attempts=0,
    )  # fmt: skip
    service = await nats.connect(f"nats://jobstream:{SERVICE_PASSWORD}@{server}")
    green_before = await _count(service, "ev.green.>")
    inbox = "_INBOX_blue.rogue"
    attempts = {
        "submit an event": ("ev.blue.job.x.submitted", b"{}"),
        "dispatch": ("ev.blue.job.x.dispatched.w1", b"{}"),
        "write to green": ("ev.green.job.x.started", b"{}"),
        "pull green's worker": ("$JS.API.CONSUMER.MSG.NEXT.EVENTS.worker:green:w1", b'{"batch":1}'),
        "create a consumer": ("$JS.API.CONSUMER.CREATE.EVENTS.mine", b"{}"),
        "direct get": ("$JS.API.DIRECT.GET.EVENTS", b'{"seq":1}'),
        "delete the stream": ("$JS.API.STREAM.DELETE.EVENTS", b""),
        "read green": (f"rd.green.job.{ids['green'][0]}", b"0"),
        "beat for green": ("hb.green.w1", b"{}"),
        "write green's output": (f"log.green.{ids['green'][0]}.1", b"{}"),
    }
    got_through = []
    for what, (subject, payload) in attempts.items():
        before = len(errors)
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        await asyncio.sleep(0.2)
        if not any("permissions violation" in e for e in errors[before:]):
            got_through.append(what)
    for what, subject in (
        ("sniff all replies", "_INBOX.>"),
        ("sniff green's replies", "_INBOX_green.>"),
        ("read green's events", "ev.green.>"),
        ("read green's output", "log.green.>"),
        ("read green's beats", "hb.green.>"),
    ):
        before = len(errors)
        await nc.subscribe(subject)
        await nc.flush()
        await asyncio.sleep(0.2)
        if not any("permissions violation" in e for e in errors[before:]):
            got_through.append(what)
    # An allowed subject with a reply aimed at green's log: the ack crosses accounts on a
    # server-made subject and never reaches the stream.
    await nc.publish(
        f"ev.blue.job.{ids['blue'][0]}.started", b"{}", reply=f"ev.green.job.{ids['green'][0]}.cancelled"
    )
    await nc.flush()
    await asyncio.sleep(0.5)
    # Stream headers are the ingress's to set: a Msg-Id aimed at green's idempotency key never
    # reaches the stream (a report without a fence is refused outright: it would start the
    # history of a job that never was), and a fence on green's subjects is refused rather than
    # answered with green's last sequence.
    report = Started(domain="blue", actor="rogue", job_id="rogue-job", worker_id="w9", attempt=1)
    poisoned = await nc.request(
        "ev.blue.job.rogue-job.started",
        encode(report),
        timeout=5,
        headers={"Nats-Msg-Id": "submit:green:poison"},
    )
    assert "must be fenced" in json.loads(poisoned.data)["error"]["description"], poisoned.data
    fence = {
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": "ev.green.>",
    }
    probe = await nc.request("ev.blue.job.rogue-job.started", encode(report), timeout=5, headers=fence)
    probe_error = json.loads(probe.data)["error"]["description"]
    own = await nc.request(f"rd.blue.job.{ids['blue'][0]}", b"0", timeout=5)
    page = msgspec.msgpack.decode(own.data, type=ReadPage)
    green_after = await _count(service, "ev.green.>")
    await nc.close()
    await service.close()
    return {
        "probe_error": probe_error,
        "got_through": got_through,
        "own_read": len(page.events),
        "green_log_unchanged": green_after == green_before,
        "errors": errors,
    }


async def _rotated_login_lasts(up: Up, c: httpx.Client, token: str, token_id: str, overlap_s: float) -> float:
    """Seconds from the rotation until the broker closes the old token's connection."""
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    secret = token.removeprefix("jst_").split("_", 1)[1]
    server = up.nats_url.removeprefix("nats://")
    nc = await nats.connect(
        f"nats://jst_{token_id}:{secret}@{server}", allow_reconnect=False, disconnected_cb=on_closed
    )
    rotate = functools.partial(c.post, f"/admin/domains/green/tokens/{token_id}/rotate")
    rotated = await asyncio.to_thread(rotate, json={"overlap_s": overlap_s})
    assert rotated.status_code == 201, rotated.text
    t0 = time.monotonic()
    await asyncio.wait_for(closed.wait(), overlap_s + REVOKE_BOUND_S + 5)
    with contextlib.suppress(Exception):
        await nc.close()
    return time.monotonic() - t0


async def _count(nc: nats.NATS, subject: str) -> int:
    info = await nc.jetstream().stream_info("EVENTS", subjects_filter=subject)
    return sum((info.state.subjects or {}).values())
