"""The dispatcher process: follow the log, and while holding the lease place, fail over and hand back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from events import subjects, tracecontext
from events.base import DomainError, utcnow
from events.codec import DecodeError, decode_event, decode_heartbeat
from events.job import Dispatched, JobEvent, JobSpec, JobStatus, decide_dispatch, decide_hold, decide_requeue
from events.store import (
    Append,
    Appended,
    AppendUncertain,
    EventStore,
    WrongExpectedSequence,
    job_append,
    stream_seq,
)
from events.streams import EVENTS_STREAM, FOLLOW_IDLE_HEARTBEAT_S, HEARTBEATS_STREAM, provision
from events.worker import WORKER_TTL_S, CameOnline, WentOffline, WorkerStatus, decide_offline, decide_online
from services.dispatcher.failover import Liveness, held_by_gone_runs, silent, unreported
from services.dispatcher.limits import LimitKey, WithPlanned, blocking, counted
from services.dispatcher.placement import choose, unplaceable
from services.dispatcher.state import DispatchState, JobEntry, Key
from services.runtime import tracing
from services.runtime.connect import connect, jetstream
from services.runtime.lease import Lease

log = logging.getLogger(__name__)

LEASE_KEY = "dispatcher"
IDLE_TICK_S = 0.5
FOLLOW_PENDING_LIMIT = 1_000_000
# Every append of a tick is fenced, so one that fails is simply decided again next tick: a
# tick waits on a sick broker no longer than this (within the lease TTL), not the store's 20 s.
APPEND_DEADLINE_S = 4.0
# The worker reads a scheduled job's schedule id from the assignment's W3C baggage.
SCHEDULE_BAGGAGE = "jobstream.schedule.id"


class Dispatcher:
    def __init__(self, nats_url: str, ttl_s: float = WORKER_TTL_S, max_running_per_domain: int = 0) -> None:
        if max_running_per_domain < 0:
            raise ValueError("max_running_per_domain must be 0 (unlimited) or more")
        self.nats_url = nats_url
        self.ttl_s = ttl_s
        self.max_running_per_domain = max_running_per_domain
        self.state = DispatchState()
        self.inbox: list[Msg] = []
        self.wake = asyncio.Event()
        self.caught_up = False
        self.catch_up_to = 0
        self.undecodable = 0
        self.dispatched = 0
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._store: EventStore | None = None
        self.lease: Lease | None = None
        self._last_heard = time.monotonic()  # the last beat of any worker
        self.unsettled: dict[Key, JobSpec] = {}  # dispatches whose outcome is unknown
        # Trace headers of each live job's last traced event (kept only while tracing is on).
        self.traces: dict[Key, dict[str, str]] = {}
        self.tracer = tracing.tracer("dispatcher")

    @property
    def store(self) -> EventStore:
        assert self._store is not None
        return self._store

    async def run(self, stop: asyncio.Event) -> None:
        self._nc = nc = await connect(self.nats_url, "dispatcher", reconnected=self._on_reconnected)
        self._js = js = jetstream(nc)
        self._store = EventStore(nc, js)
        await provision(js)
        self.lease = Lease(js, LEASE_KEY)
        self.catch_up_to = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        self.caught_up = self.catch_up_to == 0
        follow = await js.subscribe(
            "ev.>",
            stream=EVENTS_STREAM,
            cb=self._on_event,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.ALL,
            idle_heartbeat=FOLLOW_IDLE_HEARTBEAT_S,  # a lost follow is rebuilt in ~2 s, not 18
            pending_msgs_limit=FOLLOW_PENDING_LIMIT,
            pending_bytes_limit=-1,
        )
        await self._load_heartbeats(js)
        beats = await nc.subscribe("hb.>", cb=self._on_heartbeat)
        try:
            async with self.lease.kept(stop, self.wake.set):
                await self._loop(stop)
        finally:
            await follow.unsubscribe()
            await beats.unsubscribe()
            await nc.close()

    async def _load_heartbeats(self, js: JetStreamContext) -> None:
        """Last beat per worker, taken as received now: every known worker gets one TTL of grace."""
        try:
            sub = await js.subscribe(
                "hb.>", stream=HEARTBEATS_STREAM, ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            )  # fmt: skip
        except Exception as exc:
            log.warning("could not read heartbeats: %s", exc)
            return
        try:
            while True:
                msg = await sub.next_msg(timeout=0.5)
                await self._on_heartbeat(msg)
                if msg.metadata.num_pending == 0:
                    break
        except TimeoutError:
            pass
        finally:
            await sub.unsubscribe()

    def _on_reconnected(self) -> None:
        """Beats sent while we were away never reached us: that silence is ours, not the
        workers'. Each worker's silence is shortened by our own (since we last heard any beat),
        instead of all going offline; a worker silent before we went away is not spared."""
        now = time.monotonic()
        ours = now - self._last_heard
        for entry in self.state.workers.values():
            entry.last_beat = min(now, entry.last_beat + ours)
        self.state.missing_since.clear()  # nor do beats we missed say what a worker left out

    async def _on_event(self, msg: Msg) -> None:
        self.inbox.append(msg)
        self.wake.set()

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            beat = decode_heartbeat(msg.subject, msg.data)
        except DecodeError as exc:
            log.warning("bad heartbeat on %s: %s", msg.subject, exc)
            return
        entry = self.state.workers.get((beat.domain, beat.worker_id))
        self._last_heard = time.monotonic()
        self.state.beat(beat, self._last_heard)
        if entry is not None and entry.state.status is WorkerStatus.OFFLINE:
            self.wake.set()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel racing its timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_TICK_S):
                    await self.wake.wait()
            self.wake.clear()
            self._drain_inbox()
            if self.caught_up and self.lease is not None and self.lease.held:
                try:
                    await self.tick()
                except Exception:
                    log.exception("dispatcher tick failed; retrying")
                    await asyncio.sleep(IDLE_TICK_S)

    def _drain_inbox(self) -> None:
        batch, self.inbox = self.inbox, []
        for msg in batch:
            seq = stream_seq(msg)
            try:
                event = decode_event(msg.subject, msg.data)
            except DecodeError as exc:
                self.undecodable += 1
                log.error("skipping undecodable event seq %d on %s: %s", seq, msg.subject, exc)
            else:
                self.state.apply(seq, event)
                if isinstance(event, JobEvent) and tracing.enabled():
                    self._remember_trace((event.domain, event.job_id), msg.headers)
            if not self.caught_up and (seq >= self.catch_up_to or msg.metadata.num_pending == 0):
                self.caught_up = True
                log.info("dispatcher caught up at seq %d", seq)

    # ---- trace context -----------------------------------------------------------------

    def _remember_trace(self, key: Key, headers: dict[str, str] | None) -> None:
        if key not in self.state.jobs:
            self.traces.pop(key, None)  # ended: nothing more is decided about it
        elif headers and tracecontext.TRACEPARENT in headers:
            self.traces[key] = {
                k: headers[k] for k in (tracecontext.TRACEPARENT, tracecontext.TRACESTATE) if k in headers
            }

    def _job_context(self, key: Key) -> Context | None:
        """The job's trace, so what the dispatcher appends about a job lands in the job's trace."""
        return tracing.context_from(self.traces.get(key)) if tracing.enabled() else None

    def _consumer_spans(self, planned: list[Append]) -> tuple[list[Append], list[Span | None], Span | None]:
        """One CONSUMER span per dispatch, a child of the job's trace and linked to the round's
        batch span; each dispatch append (its producer span) is a child of it."""
        if not planned or not tracing.enabled():
            return planned, [], None
        batch: Span | None = None
        items: list[Append] = []
        spans: list[Span | None] = []
        for item in planned:
            event = item.event
            assert isinstance(event, Dispatched)
            key = (event.domain, event.job_id)
            parent = self._job_context(key) or Context()
            entry = self.state.jobs.get(key)
            schedule_id = entry.state.schedule_id if entry else None
            if tracing.unsampled(parent):  # no span: the dispatch carries the job's context on
                ctx = baggage.set_baggage(SCHEDULE_BAGGAGE, schedule_id, parent) if schedule_id else parent
                items.append(replace(item, context=ctx))
                spans.append(None)
                continue
            if batch is None:
                batch = self.tracer.start_span(
                    "dispatch batch", attributes={"jobstream.batch.size": len(planned)}
                )
            span = self.tracer.start_span(
                "dispatch job",
                context=parent,
                kind=SpanKind.CONSUMER,
                links=[Link(batch.get_span_context())],
                attributes={
                    "jobstream.job.id": event.job_id, "jobstream.domain": event.domain,
                    "jobstream.worker.id": event.worker_id, "jobstream.attempt": event.attempt,
                    "jobstream.schedule.id": schedule_id or "", "messaging.system": "nats",
                    "messaging.operation.type": "process",
                },
            )  # fmt: skip
            ctx = trace.set_span_in_context(span, parent)
            if schedule_id:
                ctx = baggage.set_baggage(SCHEDULE_BAGGAGE, schedule_id, ctx)
            items.append(replace(item, context=ctx))
            spans.append(span)
        return items, spans, batch

    # ---- one round of decisions ------------------------------------------------------

    async def tick(self) -> None:
        now = time.monotonic()
        wall = utcnow()
        await self._failover(now)
        await self._hand_back_orphans()
        await self._reclaim(now)
        await self._settle()
        await self._place(now, wall)

    async def _apply_results(self, items: list[Append], results: list[Appended | BaseException]) -> None:
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Appended):
                self.state.apply(result.seq, item.event)
            else:
                # Someone else moved the job (cancel, worker report): the stream brings it to us.
                log.debug("append to %s refused: %s", item.subject, result)

    async def _append(self, items: list[Append]) -> list[Appended | BaseException]:
        if not items:
            return []
        results = await self.store.append_many(items, deadline_s=APPEND_DEADLINE_S)
        await self._apply_results(items, results)
        return results

    async def _failover(self, now: float) -> None:
        st = self.state
        lives = [
            Liveness(d, w, e.state.status is WorkerStatus.ACTIVE, e.last_beat)
            for (d, w), e in st.workers.items()
        ]
        gone = silent(lives, now, self.ttl_s)
        comeback: list[Append] = []
        for key, entry in st.workers.items():
            if now - entry.last_beat <= self.ttl_s / 2 and (
                online := decide_online(entry.state, cause=entry.last_event_id)
            ):
                comeback.append(self._worker_append(key, entry.seq, online))
        offline: list[Append] = []
        for w in gone:
            key = (w.domain, w.worker_id)
            entry = st.workers[key]
            why = f"no heartbeat for {now - w.last_beat:.1f}s (ttl {self.ttl_s}s)"
            if (offline_event := decide_offline(entry.state, why, cause=entry.last_event_id)) is None:
                continue
            offline.append(self._worker_append(key, entry.seq, offline_event))
            log.warning("worker %s/%s is offline; requeueing its jobs", w.domain, w.worker_id)
        await self._append(comeback + offline)

    def _worker_append(self, key: Key, expected: int, event: CameOnline | WentOffline) -> Append:
        return Append(
            subjects.worker(key[0], key[1], event.type), event, expected, subjects.worker_all(key[0], key[1])
        )

    async def _hand_back_orphans(self) -> None:
        """Jobs held by workers that are offline or stopped go back to pending (or end, if cancelled)."""
        st = self.state
        if not st.orphaned:
            return
        keys, st.orphaned = st.orphaned, set()
        taken: list[tuple[JobEntry, str, int, str]] = []
        for domain, worker_id in keys:
            entry = st.workers.get((domain, worker_id))
            if entry is None or entry.state.status is WorkerStatus.ACTIVE:
                continue
            reason = f"worker {worker_id} is {entry.state.status}: {entry.state.reason or ''}".strip(": ")
            taken += [(job, worker_id, job.state.attempt, reason) for job in st.jobs_on(domain, worker_id)]
        await self._requeue(taken)

    async def _requeue(self, taken: list[tuple[JobEntry, str, int, str]]) -> None:
        """Take attempts back (job, worker, attempt, reason) through `decide_requeue`, each job
        once; one that moved on meanwhile is left to the stream (the append is fenced)."""
        items: list[Append] = []
        seen: set[Key] = set()
        for job, worker_id, attempt, reason in taken:
            key = (job.state.domain, job.state.id)
            if key in seen:
                continue
            seen.add(key)
            try:
                event = decide_requeue(job.state, worker_id, attempt, reason)
            except DomainError:
                continue
            items.append(job_append(event, job.seq, context=self._job_context(key)))
        await self._append(items)

    def _not_dispatched(self, key: Key, spec: JobSpec) -> None:
        """Look at the job again once its new event is folded in. Its planned count held others
        back in this round: give those limits a slot back."""
        st = self.state
        st.forfeit(key)
        for limit in counted(spec, key[0]):
            st.release(limit)
        st.fresh.add(key)

    async def _settle(self) -> None:
        """Dispatches whose outcome was unknown: landed (the follow brings the event, which frees
        nothing) or not (as if refused). A job that cannot be read yet waits for the next tick."""
        for key, spec in list(self.unsettled.items()):
            entry = self.state.jobs.get(key)
            if entry is None or entry.state.status is not JobStatus.PENDING:
                del self.unsettled[key]  # the follow has brought what happened
                continue
            try:
                _, last = await self.store.read_job(*key)
            except Exception as exc:
                log.warning("cannot tell yet whether job %s/%s was dispatched: %s", *key, exc)
                continue
            del self.unsettled[key]
            if last == entry.seq:
                self._not_dispatched(key, spec)  # nothing landed after what we know

    async def _reclaim(self, now: float) -> None:
        """Requeue attempts no live run of their worker holds: started by an earlier incarnation,
        or left out of the worker's beats past the grace (see failover.py)."""
        st = self.state
        holdings = st.holdings()
        plan = held_by_gone_runs(holdings, st.runs()) + unreported(holdings, st.missing_since, now)
        taken: list[tuple[JobEntry, str, int, str]] = []
        for held, reason in plan:
            job = st.jobs.get((held.domain, held.job_id))
            if job is not None:
                log.warning("taking back job %s/%s: %s", held.domain, held.job_id, reason)
                taken.append((job, held.worker_id, held.attempt, reason))
        await self._requeue(taken)

    async def _place(self, now: float, wall: datetime) -> None:
        st = self.state
        views = st.live_views(now, self.ttl_s)
        withheld = st.withheld_views(now, self.ttl_s)
        if st.fleet_changed:
            st.fleet_changed = False
            st.fresh |= st.held
            st.held.clear()
        holds: dict[Key, Append] = {}
        for key in st.fresh:
            entry = st.jobs.get(key)
            if entry is None or key in st.parked_at:
                continue
            reason = unplaceable(entry.state.spec, views.get(key[0], []), withheld.get(key[0], ()))
            if reason is not None:
                st.held.add(key)
                st.forfeit(key)
                event = decide_hold(entry.state, reason)
                if event is not None:
                    holds[key] = job_append(event, entry.seq, context=self._job_context(key))
            else:
                st.enqueue(key, wall)
        st.fresh.clear()
        st.release_due(wall)

        free = {d: sum(max(v.free, 0) for v in vs) for d, vs in views.items()}
        by_id = {(d, v.id): v for d, vs in views.items() for v in vs}
        planned: list[Append] = []
        planned_jobs: list[tuple[Key, JobSpec]] = []
        skipped: list[Key] = []
        # Dispatches planned in this round count toward the limits at once.
        planned_counts: Counter[LimitKey] = Counter()
        counts = WithPlanned(st.active, planned_counts)
        while sum(free.values()) > 0:
            entry = st.pop_ready()
            if entry is None:
                break
            domain = entry.state.domain
            key = (domain, entry.state.id)
            block = blocking(entry.state.spec, domain, counts, self.max_running_per_domain)
            if block is not None:
                st.park(key, entry, block.limit)
                event = decide_hold(entry.state, block.reason)
                if event is not None:
                    holds[key] = job_append(event, entry.seq, context=self._job_context(key))
                continue
            if free.get(domain, 0) <= 0:
                skipped.append(key)
                continue
            worker = choose(entry.state.spec, [by_id[(domain, v.id)] for v in views[domain]])
            if worker is None:
                skipped.append(key)
                continue
            by_id[(domain, worker.id)] = replace(worker, load=worker.load + 1)
            views[domain] = [by_id[(domain, v.id)] for v in views[domain]]
            free[domain] -= 1
            planned_counts.update(counted(entry.state.spec, domain))
            holds.pop(key, None)  # parked and released in this same round: the dispatch says it all
            planned.append(job_append(decide_dispatch(entry.state, worker.id), entry.seq))
            planned_jobs.append((key, entry.state.spec))
        for key in skipped:
            st.enqueue(key, wall)
        hold_items = list(holds.values())
        planned, spans, batch = self._consumer_spans(planned)
        results = await self._append(hold_items + planned)
        for span, result in zip(spans, results[len(hold_items) :] if spans else [], strict=True):
            if span is None:
                continue
            if not isinstance(result, Appended):
                span.set_status(Status(StatusCode.ERROR, f"not dispatched: {type(result).__name__}"))
            span.end()
        if batch is not None:
            batch.end()
        for (key, spec), result in zip(planned_jobs, results[len(hold_items) :], strict=True):
            if isinstance(result, Appended):
                self.dispatched += 1
            elif isinstance(result, AppendUncertain) and result.maybe_landed:
                # It may have landed: until we know, its slot stays taken (releasing it could
                # let a job parked under the same limit past it). Settled on the next ticks.
                self.unsettled[key] = spec
            else:
                self._not_dispatched(key, spec)
                if isinstance(result, WrongExpectedSequence):
                    self.wake.set()  # it moved: look again once the stream brings the change
                # Otherwise the broker is unwell (the store retried already): the next idle tick
                # tries again, rather than a hot loop of refused appends.
        due = st.next_due()
        if due is not None and due <= utcnow():
            self.wake.set()
