"""`jobstream audit` as a user runs it (a subprocess) against a real nats-server whose log was
written by the real dispatcher and worker: clean, then one planted event (exit 1), then a
deleted message (exit 3, "log gapped")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from events import subjects
from events.codec import encode
from events.job import JobSpec, JobStatus, ShellExecutor, Succeeded, decide_cancel
from events.store import EventStore, job_append
from events.streams import EVENTS_STREAM, provision
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.harness import engine

TIMEOUT_S = 60.0


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "NATS_SERVICE_PASSWORD")}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "audit", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
    )  # fmt: skip


async def verify(url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    done = await cli("verify", "--nats-url", url, "--json", *extra)
    assert done.returncode in (0, 1, 3), done.stderr
    return done.returncode, json.loads(done.stdout)


def shell(script: str, **kw: Any) -> JobSpec:
    return JobSpec(name="audit", executor=ShellExecutor(script=script), **kw)


async def test_audit_of_a_real_log_then_a_planted_violation_then_a_gap(own_nats_server: NatsServer) -> None:
    url = own_nats_server.url
    nc = await connect(url, "test")
    js = jetstream(nc)
    await provision(js)
    store = EventStore(nc, js)
    try:
        async with engine(url, store) as e:
            e.start_dispatcher()
            e.start_worker("w1", max_concurrency=2)
            e.start_worker("w2", max_concurrency=2)
            await e.ready("w1")
            await e.ready("w2")
            ok = [await e.submit(shell("true")) for _ in range(4)]
            retried = await e.submit(shell("exit 3", max_retries=1, retry_backoff_s=0.1))
            keyed = [await e.submit(shell("sleep 0.2", concurrency_key="k")) for _ in range(2)]
            sleeper = await e.submit(shell("sleep 30"))
            running = await e.wait(sleeper, lambda s: s.status is JobStatus.RUNNING)
            _, last = await store.read_job(e.domain, sleeper)
            await store.append(job_append(decide_cancel(running, "test"), last))
            for job_id in [*ok, retried, *keyed, sleeper]:
                await e.wait(job_id, lambda s: s.terminal, timeout=TIMEOUT_S)
            assert (await e.state(retried)).retries == 1
            domain = e.domain
        code, report = await verify(url)
        assert report["violations"] == [] and code == 0, report
        assert report["events"] == (await js.stream_info(EVENTS_STREAM)).state.last_seq
        assert "job.started-matches" in report["checked"]

        history = await cli("job", ok[0], "--domain", domain, "--nats-url", url, "--json")
        assert history.returncode == 0, history.stderr
        types = [row["type"] for row in json.loads(history.stdout)]
        assert types == ["submitted", "dispatched", "started", "succeeded"]
        table = await cli("job", ok[0], "--domain", domain, "--nats-url", url)
        assert "succeeded" in table.stdout and "CAUSATION" in table.stdout

        # A second outcome after the job ended: published past the store's fence.
        _, terminal_seq = await store.read_job(domain, ok[0])
        state = await e.state(ok[0])
        again = Succeeded(
            domain=domain, actor="worker:w1", job_id=ok[0], worker_id="w1", attempt=state.attempt
        )
        planted = (await js.publish(subjects.job(domain, ok[0], "succeeded"), encode(again))).seq
        code, report = await verify(url)
        assert code == 1
        assert [(v["check"], v["seqs"]) for v in report["violations"]] == [
            ("job.after-terminal", [terminal_seq, planted])
        ]
        text = await cli("verify", "--nats-url", url)
        assert text.returncode == 1 and "VIOLATION job.after-terminal" in text.stdout

        await js.delete_msg(EVENTS_STREAM, 3)
        code, report = await verify(url)
        assert code == 3 and report["gaps"] == [[3, 3]]
        code, report = await verify(url, "--since", "4", "--domain", domain)
        assert code == 1 and [v["check"] for v in report["violations"]] == ["job.after-terminal"]
    finally:
        await nc.close()


async def test_audit_says_why_when_it_cannot_read() -> None:
    done = await cli("verify", "--nats-url", "nats://127.0.0.1:1")
    assert done.returncode == 3
    assert "could not be read" in done.stderr
