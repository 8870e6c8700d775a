"""The scheduler process: follow the log; while holding the lease, plan due schedules and append the plans.

A tick's job is submitted before its `fired` record: if the scheduler dies between the
two, the next leader plans the same tick again, the store refuses the second job (its
id is derived from the tick), and the record is written then. If two schedulers both
act, the schedule's own sequence check lets only one record land.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import timedelta

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from events.base import DomainError, utcnow
from events.codec import DecodeError, decode_event
from events.job import Submitted, decide_cancel
from events.schedule import Fire, Missed, Plan, Queued, ScheduleEvent, Skipped, plan_due, tick_msg_id
from events.store import (
    Append,
    Appended,
    EventStore,
    WrongExpectedSequence,
    job_append,
    schedule_append,
    stream_seq,
)
from events.streams import EVENTS_STREAM, FOLLOW_IDLE_HEARTBEAT_S, provision
from services.runtime import tracing
from services.runtime.connect import connect, jetstream
from services.runtime.lease import Lease
from services.scheduler.state import Key, SchedulerState

log = logging.getLogger(__name__)

LEASE_KEY = "scheduler"
IDLE_WAIT_S = 1.0
PLAN_RETRY_S = 60.0
PARALLEL_SCHEDULES = 512
FOLLOW_PENDING_LIMIT = 2_000_000
FOLLOW_SUBJECTS = [
    "ev.*.schedule.>",
    *(f"ev.*.job.*.{kind}" for kind in ("submitted", "succeeded", "failed", "timed_out", "cancelled")),
]
ACTOR = "scheduler"


class Scheduler:
    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.state = SchedulerState()
        self.inbox: list[Msg] = []
        self.wake = asyncio.Event()
        self.caught_up = False
        # Unknown until the follow consumer says; until then only `num_pending == 0` on a
        # delivered message ends the catch-up.
        self.catch_up_to = 2**63
        self.undecodable = 0
        self.fired = 0
        self.tracer = tracing.tracer("scheduler")
        self.skipped = 0
        self.missed = 0
        self.lease: Lease | None = None
        self._store: EventStore | None = None

    @property
    def store(self) -> EventStore:
        assert self._store is not None
        return self._store

    @property
    def leading(self) -> bool:
        return self.lease is not None and self.lease.held

    async def run(self, stop: asyncio.Event, nc: NATS | None = None) -> None:
        own = nc is None
        nc = nc or await connect(self.nats_url, "scheduler")
        js = jetstream(nc)
        self._store = EventStore(nc, js)
        await provision(js)
        self.lease = Lease(js, LEASE_KEY)
        # Only what planning needs: schedule events, and the creation and end of jobs (a
        # schedule's unfinished runs). Dispatches, starts and the rest never reach us.
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL, filter_subjects=FOLLOW_SUBJECTS)
        follow = await js.subscribe(
            "ev.>", stream=EVENTS_STREAM, cb=self._on_event, ordered_consumer=True, config=config,
            pending_msgs_limit=FOLLOW_PENDING_LIMIT, pending_bytes_limit=-1,
            idle_heartbeat=FOLLOW_IDLE_HEARTBEAT_S,
        )  # fmt: skip
        info = await follow.consumer_info()
        if info.num_pending == 0:
            # Everything that matches was delivered already (or nothing matches): caught up
            # once the last of it is folded in.
            self.catch_up_to = int(info.delivered.stream_seq or 0) if info.delivered else 0
            self.caught_up = self.catch_up_to == 0
        try:
            async with self.lease.kept(stop, self._became_leader):
                await self._loop(stop)
        finally:
            await follow.unsubscribe()
            if own:
                await nc.close()

    def _became_leader(self) -> None:
        """Plan every schedule at once: the previous leader may have left ticks due."""
        self.state.dirty |= set(self.state.schedules)
        self.wake.set()

    async def _on_event(self, msg: Msg) -> None:
        self.inbox.append(msg)
        self.wake.set()

    def _drain_inbox(self) -> None:
        batch, self.inbox = self.inbox, []
        for msg in batch:
            seq = stream_seq(msg)
            if not self.state.seen(msg.subject, seq):  # our own appends come back: skip undecoded
                self._fold(msg, seq)
            if not self.caught_up and (seq >= self.catch_up_to or msg.metadata.num_pending == 0):
                self.caught_up = True
                log.info("scheduler caught up at seq %d", seq)

    def _fold(self, msg: Msg, seq: int) -> None:
        try:
            event = decode_event(msg.subject, msg.data)
        except DecodeError as exc:
            self.undecodable += 1
            log.error("skipping undecodable event seq %d on %s: %s", seq, msg.subject, exc)
        else:
            self.state.apply(seq, event)

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            wait = IDLE_WAIT_S
            nxt = self.state.next_timer()
            if nxt is not None and self.leading:
                wait = max(0.0, min(wait, (nxt - utcnow()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.wake.wait()
            self.wake.clear()
            self._drain_inbox()
            if self.caught_up and self.leading:
                try:
                    await self.tick()
                except Exception:
                    log.exception("scheduler pass failed; retrying")
                    await asyncio.sleep(IDLE_WAIT_S)

    async def tick(self) -> None:
        now = utcnow()
        keys = self.state.due(now)
        if not keys:
            return
        plain: list[tuple[Key, Plan, int]] = []
        other: list[Key] = []
        for key in keys:
            known = self.state.schedules.get(key)
            if known is None:
                continue
            try:
                plan = plan_due(known[0], self.state.runs_of(key), now, ACTOR, self.state.last_event.get(key))
            except Exception:  # one schedule's bug must not take the others' wake-ups with it
                log.exception("planning schedule %s/%s failed; trying again in %ss", *key, PLAN_RETRY_S)
                self.state.wake_at(key, now + timedelta(seconds=PLAN_RETRY_S))
                continue
            if not plan.steps:
                self.state.wake_at(key, plan.wake_at)
            elif not plan.cancel:
                plain.append((key, plan, known[1]))
            else:
                other.append(key)
        if plain:
            await self._pipelined(plain)
        gate = asyncio.Semaphore(PARALLEL_SCHEDULES)

        async def one(key: Key) -> None:
            async with gate:
                await self._pass(key)

        await asyncio.gather(*(one(k) for k in other))

    async def _pipelined(self, batch: list[tuple[Key, Plan, int]]) -> None:
        """Plans without cancels, pipelined across schedules: every tick's job in one burst,
        then the records in rounds (a schedule's n-th record is fenced on its (n-1)-th)."""
        steps = [list(plan.steps) for _, plan, _ in batch]
        jobs = [
            (i, k, self._submitted(batch[i][0], step))
            for i, plan_steps in enumerate(steps)
            for k, step in enumerate(plan_steps)
            if isinstance(step, Fire)
        ]
        retry: set[int] = set()
        spans = {(i, k): span for i, k, (item, _) in jobs if (span := self._tick_span(item)) is not None}
        try:
            await self._pipelined_traced(batch, steps, jobs, retry, spans)
        finally:
            for span in spans.values():
                span.end()

    async def _pipelined_traced(
        self,
        batch: list[tuple[Key, Plan, int]],
        steps: list[list[Fire | Skipped | Queued | Missed]],
        jobs: list[tuple[int, int, tuple[Append, Submitted]]],
        retry: set[int],
        spans: dict[tuple[int, int], Span],
    ) -> None:
        contexts = {at: trace.set_span_in_context(span) for at, span in spans.items()}
        results = await self.store.append_many(
            [replace(item, context=contexts.get((i, k))) for i, k, (item, _) in jobs]
        )
        for (i, k, (_, submitted)), result in zip(jobs, results, strict=True):
            if isinstance(result, Appended) and not result.duplicate:
                self.state.apply(result.seq, submitted)
            elif not isinstance(result, Appended | WrongExpectedSequence):  # those: the job existed
                # Record nothing from this tick on: the next pass decides it again.
                del steps[i][k:]
                retry.add(i)
                log.error("schedule %s/%s: could not submit its job: %s", *batch[i][0], result)
        seqs = [seq for _, _, seq in batch]
        active = [i for i in range(len(batch)) if steps[i]]
        n = 0
        while active:
            events = [_record(steps[i][n]) for i in active]
            items = [
                schedule_append(event, seqs[i], context=contexts.get((i, n)))
                for i, event in zip(active, events, strict=True)
            ]
            results = await self.store.append_many(items)
            going = []
            for i, event, result in zip(active, events, results, strict=True):
                key = batch[i][0]
                if isinstance(result, Appended):
                    seqs[i] = result.seq
                    self.state.apply(result.seq, event)
                    self.state.dirty.discard(key)
                    self._count(event)
                    if n + 1 < len(steps[i]):
                        going.append(i)
                    elif i not in retry:
                        self.state.wake_at(key, batch[i][1].wake_at)
                elif isinstance(result, WrongExpectedSequence):
                    retry.discard(i)
                    self.state.dirty.add(key)  # someone else recorded: look again once folded in
                    self.wake.set()
                else:
                    retry.add(i)
                    log.error("schedule %s/%s: could not record its tick: %s", *key, result)
            active = going
            n += 1
        for i in retry:
            self.state.wake_at(batch[i][0], utcnow() + timedelta(seconds=1))

    def _tick_span(self, item: Append) -> Span | None:
        """A root span per tick (a new trace: the tick's job is its own trace, whatever the
        scheduler was doing), parent of the job's `submitted` append and of the tick's record."""
        if not tracing.enabled():
            return None
        event = item.event
        assert isinstance(event, Submitted)
        tick = event.tick.isoformat() if event.tick else ""
        return self.tracer.start_span(
            "schedule tick",
            context=Context(),
            kind=SpanKind.PRODUCER,
            attributes={
                "jobstream.schedule.id": event.schedule_id or "", "jobstream.domain": event.domain,
                "jobstream.job.id": event.job_id, "jobstream.tick": tick,
            },
        )  # fmt: skip

    def _submitted(self, key: Key, fire: Fire) -> tuple[Append, Submitted]:
        state = self.state.schedules[key][0]
        submitted = Submitted(
            domain=state.domain, actor=ACTOR, job_id=fire.job_id, correlation_id=fire.job_id,
            causation_id=fire.event.id, spec=state.spec.job, schedule_id=state.id, tick=fire.tick,
        )  # fmt: skip
        return job_append(submitted, 0, tick_msg_id(state.id, fire.tick)), submitted

    def _count(self, event: ScheduleEvent) -> None:
        if event.type == "fired":
            self.fired += 1
        elif event.type == "skipped":
            self.skipped += 1
        elif event.type == "missed":
            self.missed += 1

    async def _pass(self, key: Key) -> None:
        known = self.state.schedules.get(key)
        if known is None:
            return
        state, seq = known
        plan = plan_due(state, self.state.runs_of(key), utcnow(), ACTOR, self.state.last_event.get(key))
        try:
            await self._carry_out(key, plan, seq)
        except WrongExpectedSequence:
            # Someone else recorded on this schedule: look again once their event is folded in.
            self.state.dirty.add(key)
            self.wake.set()
            return
        except Exception:
            log.exception("schedule %s/%s: pass failed; retrying in a second", *key)
            self.state.wake_at(key, utcnow() + timedelta(seconds=1))
            return
        self.state.wake_at(key, plan.wake_at)

    async def _carry_out(self, key: Key, plan: Plan, seq: int) -> None:
        state = self.state.schedules[key][0]
        for job_id in plan.cancel:
            await self._cancel(key[0], job_id, state.id)
        for step in plan.steps:
            span: Span | None = None
            try:
                context: Context | None = None
                if isinstance(step, Fire):
                    item, submitted = self._submitted(key, step)
                    span = self._tick_span(item)
                    context = trace.set_span_in_context(span) if span is not None else None
                    try:
                        done = await self.store.append(replace(item, context=context))
                        self.state.apply(done.seq, submitted)
                    except WrongExpectedSequence:
                        log.info("job for %s tick %s exists already", state.id, step.tick.isoformat())
                event = _record(step)
                result: Appended = await self.store.append(schedule_append(event, seq, context=context))
            finally:
                if span is not None:
                    span.end()
            seq = result.seq
            self.state.apply(seq, event)
            self.state.dirty.discard(key)
            self._count(event)

    async def _cancel(self, domain: str, job_id: str, schedule_id: str) -> None:
        state, last = await self.store.read_job(domain, job_id)
        if state is None or state.terminal:
            return
        try:
            event = decide_cancel(state, ACTOR, f"schedule {schedule_id}: cancel_other")
            await self.store.append(job_append(event, last))
        except (DomainError, WrongExpectedSequence) as exc:
            log.info("could not cancel %s for schedule %s: %s", job_id, schedule_id, exc)


def _record(step: Fire | ScheduleEvent) -> ScheduleEvent:
    return step.event if isinstance(step, Fire) else step
