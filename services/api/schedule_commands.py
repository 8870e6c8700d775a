"""Schedule commands: read the schedule from the log, decide with the pure rules, append fenced."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

from events import subjects
from events.base import Conflict, NotFound, utcnow
from events.ids import new_id
from events.job import Submitted
from events.schedule import (
    ScheduleEvent,
    ScheduleSpec,
    ScheduleState,
    backfill_ticks,
    decide_backfill_fire,
    decide_backfill_queue,
    decide_create,
    decide_run_now,
    evolve_schedule,
    tick_msg_id,
)
from events.store import EventStore, WrongExpectedSequence, job_append, schedule_append
from services.api.causation import caused, fold_last

ATTEMPTS = 5


async def create(store: EventStore, domain: str, actor: str, spec: ScheduleSpec) -> tuple[str, int]:
    schedule_id = new_id()
    event = decide_create(domain, schedule_id, spec, actor, utcnow())
    done = await store.append(schedule_append(event, 0))
    return schedule_id, done.seq


async def change(
    store: EventStore,
    domain: str,
    schedule_id: str,
    decide: Callable[[ScheduleState], ScheduleEvent | None],
) -> int:
    """Apply one decision to the schedule's latest state; a race with the scheduler is retried."""
    for _ in range(ATTEMPTS):
        state, last, cause = await fold_last(
            store, subjects.schedule_all(domain, schedule_id), evolve_schedule
        )
        if state is None:
            raise NotFound(f"schedule {schedule_id} not found")
        event = decide(state)
        if event is None:
            return last
        try:
            return (await store.append(schedule_append(caused(event, cause), last))).seq
        except WrongExpectedSequence:
            continue
    raise Conflict(f"schedule {schedule_id} kept changing; try again")


async def _submit(store: EventStore, state: ScheduleState, job_id: str, tick: datetime, actor: str) -> bool:
    """The tick's job; False if it exists already (the tick was fired before)."""
    event = Submitted(
        domain=state.domain, actor=actor, job_id=job_id, correlation_id=job_id, spec=state.spec.job,
        schedule_id=state.id, tick=tick,
    )  # fmt: skip
    try:
        # Within the dedupe window the tick's msg id makes a second submit a duplicate; after
        # it, the fence on "no events yet" refuses it. Either way the job existed already.
        return not (await store.append(job_append(event, 0, tick_msg_id(state.id, tick)))).duplicate
    except WrongExpectedSequence:
        return False


async def run_now(store: EventStore, domain: str, schedule_id: str, actor: str) -> tuple[str, int]:
    state, _ = await store.read_schedule(domain, schedule_id)
    if state is None:
        raise NotFound(f"schedule {schedule_id} not found")
    now = utcnow()
    job_id = new_id()
    decide_run_now(state, actor, now, job_id)  # refuses a deleted schedule before any append
    await _submit(store, state, job_id, now, actor)
    seq = await change(store, domain, schedule_id, lambda s: decide_run_now(s, actor, now, job_id))
    return job_id, seq


def _queue(state: ScheduleState, *, tick: datetime, actor: str) -> ScheduleEvent:
    return decide_backfill_queue(state, tick, actor)


def _fire(state: ScheduleState, *, tick: datetime, actor: str) -> ScheduleEvent:
    return decide_backfill_fire(state, tick, actor)


async def backfill(
    store: EventStore, domain: str, schedule_id: str, actor: str, start: datetime, end: datetime, policy: str
) -> tuple[list[datetime], list[str], list[str], list[datetime], int]:
    """Fire (or queue, one at a time) every tick in (start, end]; ticks fired before stay as they were."""
    state, _ = await store.read_schedule(domain, schedule_id)
    if state is None:
        raise NotFound(f"schedule {schedule_id} not found")
    ticks = backfill_ticks(state, start, end, utcnow())
    fired: list[str] = []
    existing: list[str] = []
    queued: list[datetime] = []
    seq = 0
    for tick in ticks:
        if policy == "queue":
            seq = await change(store, domain, schedule_id, functools.partial(_queue, tick=tick, actor=actor))
            queued.append(tick)
            continue
        event = decide_backfill_fire(state, tick, actor)
        if not await _submit(store, state, event.job_id, tick, actor):
            existing.append(event.job_id)
            continue
        seq = await change(store, domain, schedule_id, functools.partial(_fire, tick=tick, actor=actor))
        fired.append(event.job_id)
    return ticks, fired, existing, queued, seq
