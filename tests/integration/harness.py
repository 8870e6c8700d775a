"""In-process dispatcher and workers against a real nats-server, for tests below the API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from events.ids import new_id
from events.job import JobSpec, JobState, Submitted, decide_cancel
from events.store import EventStore, job_append
from services.dispatcher.service import Dispatcher
from services.worker.agent import Worker
from services.worker.settings import WorkerSettings


@dataclass
class Engine:
    url: str
    store: EventStore
    domain: str = field(default_factory=lambda: "t" + new_id()[-8:].lower())
    stops: dict[str, asyncio.Event] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)

    def start_dispatcher(self, name: str = "dispatcher") -> Dispatcher:
        d = Dispatcher(self.url)
        self.stops[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(d.run(self.stops[name]))
        return d

    def start_worker(self, worker_id: str, **kw: object) -> Worker:
        settings = WorkerSettings(nats_url=self.url, worker_id=worker_id, domain=self.domain, **kw)  # type: ignore[arg-type]
        w = Worker(settings)
        self.workers[worker_id] = w
        self.stops[worker_id] = asyncio.Event()
        self.tasks[worker_id] = asyncio.create_task(w.run(self.stops[worker_id]))
        return w

    async def stop(self, name: str, timeout: float = 30) -> None:
        self.stops[name].set()
        await asyncio.wait_for(self.tasks.pop(name), timeout)

    async def stop_all(self) -> None:
        for name in [n for n in self.tasks if n in self.workers] + [
            n for n in self.tasks if n not in self.workers
        ]:
            with contextlib.suppress(Exception):
                await self.stop(name)

    async def submit(self, spec: JobSpec) -> str:
        job_id = new_id()
        event = Submitted(domain=self.domain, actor="test", job_id=job_id, spec=spec)
        await self.store.append(job_append(event, 0))
        return job_id

    async def state(self, job_id: str) -> JobState:
        state, _ = await self.store.read_job(self.domain, job_id)
        assert state is not None
        return state

    async def wait(self, job_id: str, pred: object, timeout: float = 20) -> JobState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = await self.state(job_id)
            if pred(state):  # type: ignore[operator]
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} never got there; last: {state.status} {state.error}")

    async def mixed(self, ok: list[JobSpec], flaky: JobSpec, held: JobSpec) -> tuple[list[str], str, str]:
        """A log with every ending: the `ok` jobs and the retried `flaky` one run to the end, `held`
        (which no worker matches) waits and is then cancelled. Returns the three kinds' ids."""
        ok_ids = [await self.submit(s) for s in ok]
        flaky_id = await self.submit(flaky)
        held_id = await self.submit(held)
        for job_id in [*ok_ids, flaky_id]:
            await self.wait(job_id, lambda s: s.terminal)
        await self.wait(held_id, lambda s: s.pending_reason is not None)
        state, last = await self.store.read_job(self.domain, held_id)
        assert state is not None
        await self.store.append(job_append(decide_cancel(state, "test"), last))
        return ok_ids, flaky_id, held_id

    async def ready(self, worker_id: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            w = self.workers[worker_id]
            if w._puller is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"worker {worker_id} not ready")


@contextlib.asynccontextmanager
async def engine(url: str, store: EventStore) -> AsyncIterator[Engine]:
    e = Engine(url, store)
    try:
        yield e
    finally:
        await e.stop_all()
