"""The dispatcher takes back what a live worker no longer runs, on the worker's own word.

A `started` that timed out but landed, or a task that died, leaves the log saying "running on
w1" while w1 runs nothing: before, such a job stayed running forever. Now the dispatcher
compares each beat's `running` list with what it assigned and requeues what is left out."""

from __future__ import annotations

import asyncio
from pathlib import Path

from events import subjects
from events.job import JobSpec, JobStatus, Requeued, ShellExecutor
from events.store import EventStore
from services.dispatcher.failover import UNREPORTED_RUNNING_GRACE_S
from services.runtime.nats_server import NatsServer
from tests.integration.harness import engine


async def test_an_attempt_the_worker_dropped_is_requeued_and_runs_again(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    script = f'echo "$JOBSTREAM_ATTEMPT" >> {marker}; sleep 30'
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        w = e.start_worker("w1", grace_s=0.5)
        job = await e.submit(JobSpec(name="dropped", executor=ShellExecutor(script=script)))
        await e.wait(job, lambda s: s.status is JobStatus.RUNNING)
        # The worker loses the attempt without a word to the log (as when its task dies).
        r = w.running[job]
        r.abandoned = "lost in a test"
        r.cancel.set()
        for _ in range(100):
            if job not in w.running:
                break
            await asyncio.sleep(0.05)
        assert job not in w.running
        state = await e.wait(
            job,
            lambda s: s.attempt == 2 and s.status is JobStatus.RUNNING,
            timeout=UNREPORTED_RUNNING_GRACE_S + 15,
        )
        assert state.attempts[0].status == "lost"
        history = [h.event for h in await store.read(subjects.job_all(e.domain, job))]
        [requeued] = [h for h in history if isinstance(h, Requeued)]
        assert "does not report running attempt 1" in requeued.reason, requeued
        assert marker.read_text().split() == ["1", "2"]
