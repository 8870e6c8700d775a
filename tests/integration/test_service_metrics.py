"""/metrics exports what the dispatcher, scheduler and projector count, each counter seen to move.

A server of the test's own (no other test's schedules), the API on a loopback port, and the
real dispatcher, worker and scheduler in this test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from events.store import EventStore
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.scheduler.service import Scheduler
from tests.integration.harness import engine
from tests.integration.inprocess import AUTH
from tests.integration.served import served_api

COUNTERS = (
    "jobs_dispatched", "runs_emitted", "runs_skipped_overlap", "runs_failed_launch", "schedule_missed_ticks",
)  # fmt: skip


def scrape(text: str) -> dict[str, float]:
    """`name{domain="prod"}` (or a bare `name`) → value, for the counters this test watches."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("domain", "prod") == "prod" and not sample.name.endswith("_created"):
                out.setdefault(sample.name, sample.value)
    return out


def job(**extra: Any) -> dict[str, Any]:
    return {"name": "m", "executor": {"type": "shell", "script": "true"}, "tags": ["nowhere"], **extra}


async def poll(client: httpx.AsyncClient, done: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    deadline = time.monotonic() + 30
    while True:
        seen = scrape((await client.get("/metrics")).text)
        if done(seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def test_each_service_counter_moves(own_nats_server: NatsServer, tmp_path: Path) -> None:
    url = own_nats_server.url
    with served_api(url, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as client:
            before = scrape((await client.get("/metrics")).text)
            v1 = "/api/v1/schedules"
            # Ticks every second, late the moment they come (no grace): missed, as no scheduler runs yet.
            r = await client.post(
                v1, json={"name": "miss", "interval_s": 1, "misfire_grace_s": 0, "job": job()}
            )
            assert r.status_code == 201, r.text
            # A first run that never ends (no worker has its tag): every later tick skipped for overlap.
            r = await client.post(v1, json={"name": "skip", "interval_s": 1, "job": job()})
            assert r.status_code == 201, r.text
            # A run the worker cannot start: its cwd does not exist.
            body = {
                "name": "launch",
                "cron": "0 0 1 1 *",
                "job": job(tags=[], cwd="/nonexistent-jobstream-cwd"),
            }
            launch = (await client.post(v1, json=body)).json()
            assert (await client.post(f"{v1}/{launch['id']}/run-now")).status_code == 201
            await asyncio.sleep(2.5)

            nc = await connect(url, "test")
            store = EventStore(nc, jetstream(nc))
            stop = asyncio.Event()
            scheduler = asyncio.create_task(Scheduler(url).run(stop))
            try:
                async with engine(url, store) as e:
                    e.domain = "prod"
                    e.start_dispatcher()
                    e.start_worker("mw")

                    def moved(seen: dict[str, float]) -> bool:
                        return all(seen.get(f"jobstream_{c}_total", 0) > before.get(f"jobstream_{c}_total", 0)
                                   for c in COUNTERS)  # fmt: skip

                    after = await poll(client, moved)
                    # An event no service can decode: skipped, and counted.
                    await nc.publish("ev.prod.job.junk1.submitted", b"{not json")
                    await nc.flush()
                    undecodable = await poll(
                        client, lambda s: s.get("jobstream_undecodable_events_total", 0) >= 1
                    )
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(scheduler, 30)
                await nc.close()
    delta = {
        c: after.get(f"jobstream_{c}_total", 0) - before.get(f"jobstream_{c}_total", 0) for c in COUNTERS
    }
    assert all(d > 0 for d in delta.values()), delta
    assert delta["jobs_dispatched"] == 1 and delta["runs_failed_launch"] == 1, delta  # only the run-now job
    assert delta["runs_emitted"] >= 2, delta  # run-now, and the first tick of "skip"
    assert undecodable.get("jobstream_undecodable_events_total") == 1
