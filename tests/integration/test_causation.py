"""Every append names its cause and correlation (events/base.py's rule), in a realistic log.

Real nats-server; the API in-process (TestClient) for what people do (a domain and its tokens,
templates, a schedule and its changes, jobs submitted and cancelled); the scheduler, the
dispatcher and a worker (stopped, then started again) in this loop. Then the whole log is read
back: every event carries a `correlation_id`, and a `causation_id` naming an earlier event,
except the documented ones, and the audit (`event.causation`) finds nothing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from events.base import Event
from events.domain import DomainCreated
from events.job import Submitted
from events.schedule import Created
from events.store import EventStore
from events.template import TemplateSaved
from events.worker import Registered, WorkerState, WorkerStatus, decide_offline, decide_online
from services.audit.command import run_verify
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.scheduler.service import Scheduler
from tests.integration.harness import engine
from tests.integration.inprocess import AUTH, api_client

V1 = "/api/v1"
SHELL = {"type": "shell", "script": "true"}


def _exception(event: Event, ids_before: set[str]) -> bool:
    """The documented events without a cause: an aggregate's first event, made by a request or
    a process start (a job submitted through the API, a schedule or domain created, a
    template's first version, a worker's first registration)."""
    if isinstance(event, Submitted):
        return event.schedule_id is None or event.actor != "scheduler"
    if isinstance(event, TemplateSaved):
        return event.version == 1
    if isinstance(event, Registered):
        return True  # checked below: only when the worker had no events before
    return isinstance(event, Created | DomainCreated)


async def test_every_event_names_an_earlier_cause_and_its_correlation(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    url = own_nats_server.url
    with api_client(url, tmp_path) as api:

        def ok(method: str, path: str, **kw: object) -> dict[str, object]:
            response = api.request(method, f"{V1}{path}", headers=AUTH, **kw)  # type: ignore[arg-type]
            assert response.status_code in (200, 201), (path, response.text)
            body: dict[str, object] = response.json()
            return body

        # A domain and its tokens.
        ok("POST", "/admin/domains", json={"name": "team", "description": "d"})
        token = ok("POST", "/admin/domains/team/tokens", json={"name": "ci"})
        ok("POST", f"/admin/domains/team/tokens/{token['id']}/rotate", json={"overlap_s": 60})
        ok("POST", "/admin/domains/team/disable", json={"reason": "test"})
        ok("POST", "/admin/domains/team/enable")
        # Templates: two versions, then deleted.
        ok("PUT", "/templates/nightly", json={"job": {"name": "n", "executor": SHELL}})
        ok("PUT", "/templates/nightly", json={"job": {"name": "n2", "executor": SHELL}})
        ok("DELETE", "/templates/nightly")

        nc = await connect(url, "test")
        store = EventStore(nc, jetstream(nc))
        stop = asyncio.Event()
        scheduler = asyncio.create_task(Scheduler(url).run(stop))
        try:
            async with engine(url, store) as e:
                e.domain = "prod"
                e.start_dispatcher()
                e.start_worker("w1")
                await e.ready("w1")
                schedule = ok(
                    "POST",
                    "/schedules",
                    json={"name": "tick", "interval_s": 1, "job": {"name": "t", "executor": SHELL}},
                )
                sid = schedule["id"]
                deadline = time.monotonic() + 20
                while len(await store.read("ev.prod.job.*.succeeded")) < 2:
                    assert time.monotonic() < deadline, "the schedule did not run twice"
                    await asyncio.sleep(0.2)
                ok("POST", f"/schedules/{sid}/pause")
                ok("POST", f"/schedules/{sid}/resume")
                ok("POST", f"/schedules/{sid}/run-now")
                ok("DELETE", f"/schedules/{sid}")
                # Jobs: one runs, one is cancelled while running, one is retried.
                done = ok("POST", "/jobs", json={"name": "j", "executor": SHELL})
                slow = ok(
                    "POST", "/jobs", json={"name": "s", "executor": {"type": "shell", "script": "sleep 30"}}
                )
                await e.wait(str(done["id"]), lambda s: s.terminal)
                await e.wait(str(slow["id"]), lambda s: s.status.value == "running")
                ok("POST", f"/jobs/{slow['id']}/cancel")
                await e.wait(str(slow["id"]), lambda s: s.terminal)
                ok("POST", f"/jobs/{done['id']}/retry")
                # The worker stops and comes back: `stopped`, then a re-registration.
                await e.stop("w1")
                e.start_worker("w1")
                await e.ready("w1")
                await e.wait(str(done["id"]), lambda s: s.terminal)
            stop.set()
            await asyncio.wait_for(scheduler, 10)
            events = [stored.event for stored in await store.read("ev.>")]
        finally:
            stop.set()
            await nc.close()

    seen: set[str] = set()
    aggregates: set[tuple[str, str]] = set()
    missing: list[str] = []
    kinds: set[str] = set()
    fired_later = {ev.causation_id for ev in events if isinstance(ev, Submitted) and ev.actor == "scheduler"}
    for ev in events:
        kinds.add(f"{type(ev).__module__.removeprefix('events.')}.{ev.type}")
        assert ev.correlation_id, ev
        aggregate = (type(ev).__module__, ev.correlation_id)
        if ev.causation_id is None:
            if not _exception(ev, seen) or (isinstance(ev, Registered) and aggregate in aggregates):
                missing.append(f"{ev.type} {ev.id} by {ev.actor}")
        elif ev.causation_id not in seen:
            # The one forward link: a tick's job is appended before the tick's `fired`.
            assert ev.causation_id in fired_later and isinstance(ev, Submitted), ev
        seen.add(ev.id)
        aggregates.add(aggregate)
    assert not missing, missing
    # The scenario reached every kind of append this test is about.
    assert {"domain.token_issued", "domain.token_expiring", "domain.disabled", "domain.enabled"} <= kinds, (
        kinds
    )
    assert {
        "template.saved",
        "template.deleted",
        "schedule.fired",
        "schedule.paused",
        "schedule.resumed",
    } <= kinds
    assert {"schedule.deleted", "worker.stopped", "worker.registered", "job.cancel_requested"} <= kinds, kinds
    report = await run_verify(url)
    assert not [v for v in report.violations if v.check == "event.causation"], report.violations


def test_a_worker_going_offline_or_online_names_its_last_event() -> None:
    from datetime import UTC, datetime

    from events.worker import HostFacts

    now = datetime.now(UTC)
    state = WorkerState(
        id="w", domain="d", status=WorkerStatus.ACTIVE, tags=(), allowed_users=(), max_concurrency=1,
        executors=(), host=HostFacts(), registered_at=now, updated_at=now,
    )  # fmt: skip
    offline = decide_offline(state, "silent", cause="ev-1")
    assert offline is not None and offline.causation_id == "ev-1" and offline.correlation_id == "w"
    back = decide_online(msgspec.structs.replace(state, status=WorkerStatus.OFFLINE), cause=offline.id)
    assert back is not None and back.causation_id == offline.id and back.correlation_id == "w"
