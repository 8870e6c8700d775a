"""Chatty jobs must not livelock their worker (issue 8): heartbeats keep flowing, every job
runs once, output over the caps is dropped with a note, and a cancel still lands."""

from __future__ import annotations

import asyncio
import itertools
import time

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events import subjects
from events.codec import decode_log
from events.job import JobSpec, JobStatus, ShellExecutor, Started, decide_cancel
from events.store import EventStore, job_append
from events.streams import logs_stream
from events.worker import LogLine
from services.runtime.nats_server import NatsServer
from tests.integration.harness import engine

CHATTY = "yes 'a line of chatty output, about sixty characters long......' | head -n 200000"


def shell(script: str) -> JobSpec:
    return JobSpec(name="chatty", executor=ShellExecutor(script=script))


async def read_logs(js: JetStreamContext, subject: str) -> list[LogLine]:
    lines: list[LogLine] = []
    stream = logs_stream(subject.split(".")[1])
    seq = 1
    while True:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True, direct=True)
        except NotFoundError:
            return lines
        assert raw.seq is not None
        lines.extend(decode_log(raw.data or b""))
        seq = raw.seq + 1


async def test_chatty_jobs_keep_heartbeats_flowing_and_run_once(
    nats_server: NatsServer, store: EventStore, js: JetStreamContext
) -> None:
    async with engine(nats_server.url, store) as e:
        beats: list[float] = []

        async def on_beat(_msg: object) -> None:
            beats.append(time.monotonic())

        sub = await store.nc.subscribe(subjects.heartbeat(e.domain, "w1"), cb=on_beat)
        e.start_dispatcher()
        w = e.start_worker("w1", max_concurrency=6, output_lines_per_s=5000.0, output_burst_lines=5000)
        await e.ready("w1")
        chatty = [await e.submit(shell(CHATTY)) for _ in range(3)]
        forever = await e.submit(shell("yes 'cancel me while I talk'"))
        sleeper = await e.submit(shell("sleep 3"))
        t0 = time.monotonic()
        await e.wait(forever, lambda s: s.status is JobStatus.RUNNING)
        await asyncio.sleep(1.0)
        state, last = await store.read_job(e.domain, forever)
        assert state is not None
        await store.append(job_append(decide_cancel(state, "test"), last))
        cancelled = await e.wait(forever, lambda s: s.terminal, timeout=10)
        finals = [await e.wait(j, lambda s: s.terminal, timeout=40) for j in [*chatty, sleeper]]
        beats_until = time.monotonic()
        await sub.unsubscribe()
        assert w.healthy
        elapsed = beats_until - t0
        histories = {j: await store.read(subjects.job_all(e.domain, j)) for j in [*chatty, forever, sleeper]}
        logs = {j: await read_logs(js, subjects.logs(e.domain, j, 1)) for j in [*chatty, forever]}

    assert cancelled.status is JobStatus.CANCELLED
    assert [s.status for s in finals] == [JobStatus.SUCCEEDED] * 4, [(s.status, s.error) for s in finals]
    for job, history in histories.items():
        starts = [h for h in history if isinstance(h.event, Started)]
        assert len(starts) == 1, f"job {job} started {len(starts)} times"
    window = [b for b in beats if b >= t0 - 2.5]
    gaps = [b - a for a, b in itertools.pairwise(window)] + [beats_until - window[-1]]
    assert max(gaps) < 3.0, f"heartbeat gap {max(gaps):.2f}s over {elapsed:.1f}s"
    for job in chatty:
        lines = logs[job]
        assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
        notes = [line.line for line in lines if line.stream == "jobstream"]
        assert any("lines dropped: output over 5,000 lines/s" in n for n in notes), notes
        dropped = sum(int(n.split()[1].replace(",", "")) for n in notes if "lines dropped" in n)
        assert dropped + len(lines) - len(notes) == 200_000


async def test_output_cap_stops_storing_but_the_job_runs_to_the_end(
    nats_server: NatsServer, store: EventStore, js: JetStreamContext
) -> None:
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        e.start_worker("w1", output_max_lines=1000)
        job = await e.submit(shell("seq 1 300000; echo done >&2"))
        final = await e.wait(job, lambda s: s.terminal, timeout=30)
        lines = await read_logs(js, subjects.logs(e.domain, job, 1))
    assert final.status is JobStatus.SUCCEEDED
    assert len(lines) == 1001
    assert lines[-1].stream == "jobstream" and "output cap of 1,000 lines reached" in lines[-1].line


async def test_a_hand_back_racing_a_cancel_ends_the_job_cancelled(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The hand-back's fence is stale once `cancel_requested` landed: it must re-read and
    decide again (Cancelled), not drop the hand-back and leave the job "running"."""
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        w = e.start_worker("w1")
        job = await e.submit(shell("sleep 30"))
        await e.wait(job, lambda s: s.status is JobStatus.RUNNING)
        r = w.running[job]
        r.abandoned = "shutdown"  # as a drain past its grace: the worker will hand it back
        state, last = await store.read_job(e.domain, job)
        assert state is not None
        await store.append(job_append(decide_cancel(state, "test"), last))
        assert r.task is not None
        await asyncio.wait_for(r.task, 5)  # killed by the cancel, outcome not reported
        await w._hand_back(r, "worker shut down before the job finished")
        final = await e.wait(job, lambda s: s.terminal, timeout=5)
    assert final.status is JobStatus.CANCELLED and final.requeues == 0
