"""The worker process: registration, heartbeats, assignments, outcomes, fencing and draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from events import subjects
from events.base import DomainError
from events.codec import DecodeError, decode_event, encode
from events.ids import new_id
from events.job import (
    Cancelled,
    CancelRequested,
    Dispatched,
    JobEvent,
    JobState,
    Outcome,
    Requeued,
    Started,
    decide_outcome,
    decide_requeue,
    decide_start,
    held_by_gone_run,
    started_by,
    state_from_dispatch,
)
from events.store import Append, EventStore, Publisher, WrongExpectedSequence, job_append
from events.streams import EVENTS_STREAM, provision, provision_logs, worker_consumer, worker_consumer_name
from events.worker import Heartbeat, HostFacts, Registered, Stopped
from services.runtime import tracing
from services.runtime.broker_auth import inbox_prefix
from services.runtime.connect import connect, jetstream
from services.worker.executors import SUPPORTED, execute
from services.worker.executors.base import RunContext
from services.worker.groups import GroupLedger, default_path
from services.worker.liveness import FenceRule
from services.worker.logsink import LogSink
from services.worker.puller import Puller
from services.worker.settings import WorkerSettings

log = logging.getLogger(__name__)

# The dispatcher puts a scheduled job's schedule id in the assignment's W3C baggage.
SCHEDULE_BAGGAGE = "jobstream.schedule.id"

HEARTBEAT_TIMEOUT_S = 1.0
LOGIN_REFUSED_GIVE_UP_S = 10.0
CONSUMER_GRANT_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 0.25
REPORT_DEADLINE_S = 60.0
EARLY_CANCEL_KEEP_S = 300.0  # how long a cancel for a job we do not hold yet is remembered
VERSION = "0.1.0"


@dataclass
class Running:
    dispatched: Dispatched
    seq: int  # sequence of our last append to the job: the fence for the next one
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the attempt is no longer ours to report: "requeued", "fenced", "shutdown".
    abandoned: str | None = None
    task: asyncio.Task[None] | None = None
    trace: Context | None = None  # the job's trace, from the assignment's headers
    cause: str | None = None  # id of our `started`: what the outcome answers

    @property
    def job_id(self) -> str:
        return self.dispatched.job_id


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.s = settings
        # This process's run of the worker id: jobs an earlier run held are handed back.
        self.incarnation = new_id()
        self._groups = GroupLedger(default_path(settings.domain, settings.worker_id))
        self.running: dict[str, Running] = {}
        self.fenced: list[Running] = []
        self.healthy = True
        self.draining = False
        self.hb_seq = 0
        self.last_heartbeat_ok = time.monotonic()
        self.slot_freed = asyncio.Event()
        self.jobs_done = 0
        self._nc: NATS | None = None
        # Output has a connection of its own: heartbeats, reports and control never queue
        # behind a chatty job's lines (issue 8).
        self._out_nc: NATS | None = None
        self._out_pub: Publisher | None = None
        self._early_cancels: dict[str, float] = {}
        self._bg: set[asyncio.Task[None]] = set()
        self._js: JetStreamContext | None = None
        self._store: EventStore | None = None
        self._puller: Puller | None = None
        self._stop: asyncio.Event | None = None
        self._refused_since: float | None = None
        self.gave_up: str | None = None

    @property
    def nc(self) -> NATS:
        assert self._nc is not None
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None
        return self._js

    @property
    def store(self) -> EventStore:
        assert self._store is not None
        return self._store

    @property
    def actor(self) -> str:
        return f"worker:{self.s.worker_id}"

    # ---- lifecycle ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        login = self.s.login
        self._stop = stop
        self._nc = await connect(
            self.s.server_url, f"worker {self.s.worker_id}", login=login,
            inbox_prefix=inbox_prefix(self.s.domain) if login else "_INBOX",
            errors=self._on_nats_error, reconnected=self._on_reconnected,
        )  # fmt: skip
        self._js = jetstream(self.nc)
        self._out_nc = await connect(
            self.s.server_url, f"worker {self.s.worker_id} output", login=login,
            inbox_prefix=inbox_prefix(self.s.domain) if login else "_INBOX",
        )  # fmt: skip
        self._out_pub = Publisher(self._out_nc)
        # A domain token may neither manage streams nor use direct gets: it reads through
        # broker-auth's read proxy and gets its consumer from broker-auth after registering.
        self._store = EventStore(self.nc, self.js, via_proxy=login is not None)
        self._groups.kill_leftovers()  # before registering: the new run's attempts must run alone
        if login is None:
            await provision(self.js)
            await provision_logs(self.js, [self.s.domain])  # the API makes it too; this may come first
            await self._ensure_consumer()
        subs = [
            await self.nc.subscribe(
                subjects.job_type_all(self.s.domain, "cancel_requested"), cb=self._on_cancel
            ),
            await self.nc.subscribe(subjects.job_type_all(self.s.domain, "requeued"), cb=self._on_requeued),
        ]
        try:
            await self._register()
        except Exception as exc:
            if login is None:
                raise
            raise SystemExit(
                f"error: worker {self.s.worker_id} could not register in domain {self.s.domain}: {exc!r}. "
                "A worker with a domain token needs `jobstream broker-auth` running (jobstream up starts it) "
                "and WORKER_DOMAIN set to the token's domain."
            ) from exc
        self._puller = Puller(
            self.nc, EVENTS_STREAM, worker_consumer_name(self.s.domain, self.s.worker_id), self._accept
        )
        await self._puller.start()
        if login is not None:
            await self._await_consumer(stop)
        await self._heartbeat_once()
        heartbeats = asyncio.create_task(self._heartbeat_loop(stop))
        log.info("worker %s ready in domain %s", self.s.worker_id, self.s.domain)
        try:
            await self._pull_loop(stop)
            if self.gave_up is None:
                await self._drain()
            else:
                await self._abandon_all()
        finally:
            heartbeats.cancel()
            await self._puller.stop()
            for sub in subs:
                await sub.unsubscribe()
            if self._out_nc is not None:
                await self._out_nc.close()
            await self.nc.close()

    async def _ensure_consumer(self) -> None:
        """With the service login only; a token's worker gets its consumer from broker-auth."""
        config = worker_consumer(self.s.domain, self.s.worker_id, self.s.max_concurrency)
        # If it exists from an earlier run of this worker id, keep it and its position.
        with contextlib.suppress(BadRequestError):
            await self.js.add_consumer(EVENTS_STREAM, config)

    async def _register(self) -> None:
        history = await self.store.read(subjects.worker_all(self.s.domain, self.s.worker_id))
        event = Registered(
            domain=self.s.domain,
            actor=self.actor,
            worker_id=self.s.worker_id,
            correlation_id=self.s.worker_id,
            causation_id=history[-1].event.id if history else None,  # an earlier run's last event
            tags=self.s.tags,
            allowed_users=self.s.allowed_users,
            max_concurrency=self.s.max_concurrency,
            executors=[e for e in self.s.executors if e in SUPPORTED],
            host=HostFacts(
                hostname=socket.gethostname(),
                pid=os.getpid(),
                os=platform.platform(),
                python=sys.version.split()[0],
                cpus=os.cpu_count() or 0,
            ),
            version=VERSION,
            incarnation=self.incarnation,
            admin_state=self.s.start_state,
        )
        await self._append_worker_event(event, history[-1].seq if history else 0)

    async def _append_worker_event(self, event: Registered | Stopped, expected: int) -> None:
        """Fenced on the worker's history; its causation the last event of it, read again if
        something (a dispatcher's `offline`) landed in between."""
        scope = subjects.worker_all(self.s.domain, self.s.worker_id)
        subject = subjects.worker(self.s.domain, self.s.worker_id, event.type)
        try:
            await self.store.append(Append(subject, event, expected, scope))
        except WrongExpectedSequence:
            history = await self.store.read(scope)
            event = msgspec.structs.replace(event, causation_id=history[-1].event.id if history else None)
            await self.store.append(Append(subject, event, history[-1].seq if history else 0, scope))

    async def _await_consumer(self, stop: asyncio.Event) -> None:
        """Beat (and so be given work) only once the broker lets us pull: broker-auth creates a
        token worker's consumer and grants it after seeing `registered`, about a second."""
        assert self._puller is not None
        deadline = time.monotonic() + CONSUMER_GRANT_TIMEOUT_S
        while not stop.is_set():
            if await self._puller.probe(PROBE_TIMEOUT_S):
                return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"error: the broker did not let worker {self.s.worker_id} pull its assignments within "
                    f"{CONSUMER_GRANT_TIMEOUT_S:.0f}s; is `jobstream broker-auth` running?"
                )

    async def _pull_loop(self, stop: asyncio.Event) -> None:
        assert self._puller is not None
        while not stop.is_set():
            free = self.s.max_concurrency - len(self.running)
            if self.healthy and free > 0:
                await self._puller.want(free)
            self.slot_freed.clear()
            stop_wait = asyncio.ensure_future(stop.wait())
            slot_wait = asyncio.ensure_future(self.slot_freed.wait())
            await asyncio.wait({stop_wait, slot_wait}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            slot_wait.cancel()
            if not self.nc.is_connected:
                self._puller.reset()

    async def _drain(self) -> None:
        """Stop taking work, let running jobs finish within the grace period, hand back the rest."""
        self.draining = True
        assert self._puller is not None
        await self._puller.stop()
        await self._heartbeat_once()
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks:
            log.info("draining: waiting up to %ss for %d jobs", self.s.grace_s, len(tasks))
            await asyncio.wait(tasks, timeout=self.s.grace_s)
        leftovers = list(self.running.values())
        for r in leftovers:
            r.abandoned = "shutdown"
            r.cancel.set()
        if leftovers:
            await asyncio.wait([r.task for r in leftovers if r.task], timeout=5.0)
            for r in leftovers:
                await self._hand_back(r, "worker shut down before the job finished")
        history = await self.store.read(subjects.worker_all(self.s.domain, self.s.worker_id))
        await self._append_worker_event(
            Stopped(
                domain=self.s.domain,
                actor=self.actor,
                worker_id=self.s.worker_id,
                correlation_id=self.s.worker_id,
                causation_id=history[-1].event.id if history else None,
            ),
            history[-1].seq if history else 0,
        )

    # ---- assignments ----------------------------------------------------------------

    async def _accept(self, msg: Msg) -> None:
        """Claim a slot at once, then start in a task: one slow append must not hold the others."""
        try:
            event = decode_event(msg.subject, msg.data)
        except DecodeError as exc:
            log.error("undecodable assignment %s: %s", msg.subject, exc)
            await msg.term()
            return
        if event.domain != self.s.domain:
            # Not from our consumer (which holds only our domain): never run it, never ack it.
            log.error("ignoring a delivery from domain %s on %s", event.domain, msg.subject)
            return
        if not isinstance(event, Dispatched) or event.worker_id != self.s.worker_id:
            await msg.ack()
            return
        if self.draining or not self.healthy:
            await msg.nak()
            return
        if event.job_id in self.running:
            await msg.ack()  # a redelivery of what we already run
            return
        running = Running(event, msg.metadata.sequence.stream, trace=tracing.context_from(msg.headers))
        self.running[event.job_id] = running
        if self._early_cancels.pop(event.job_id, None) is not None:
            running.cancel.set()  # the cancel overtook the assignment
        running.task = asyncio.create_task(self._start_and_run(running, msg))

    async def _start_and_run(self, r: Running, msg: Msg) -> None:
        """One CONSUMER span per attempt, in the job's trace: the start, the run and the outcome."""
        d = r.dispatched
        schedule_id = baggage.get_baggage(SCHEDULE_BAGGAGE, r.trace) if r.trace else None
        attributes = {
            "jobstream.job.id": d.job_id, "jobstream.job.name": d.spec.name, "jobstream.attempt": d.attempt,
            "jobstream.worker.id": self.s.worker_id, "jobstream.domain": d.domain,
            "jobstream.schedule.id": str(schedule_id or ""), "messaging.system": "nats",
            "messaging.operation.type": "process", "messaging.destination.name": msg.subject,
        }  # fmt: skip
        with tracing.span(
            "worker", "run job", kind=SpanKind.CONSUMER, context=r.trace, attributes=attributes
        ):
            await self._start_and_run_traced(r, msg)

    async def _start_and_run_traced(self, r: Running, msg: Msg) -> None:
        try:
            started = await self._start(r)
        except Exception:
            self.running.pop(r.job_id, None)
            self.slot_freed.set()
            log.exception("could not start job %s; leaving the assignment for redelivery", r.job_id)
            return
        await msg.ack()
        if not started:
            self.running.pop(r.job_id, None)
            self.slot_freed.set()
            return
        await self._run(r)

    async def _start(self, r: Running) -> bool:
        """Append `started` fenced on the exact dispatch; False when the assignment is stale."""
        d = r.dispatched
        event: JobEvent = Started(
            domain=d.domain, actor=self.actor, job_id=d.job_id, correlation_id=d.job_id,
            causation_id=d.id, worker_id=self.s.worker_id, attempt=d.attempt, incarnation=self.incarnation,
        )  # fmt: skip
        expected = r.seq
        try:
            r.seq = (await self.store.append(job_append(event, expected))).seq
            r.cause = event.id
            return True
        except WrongExpectedSequence:
            state, last = await self.store.read_job(d.domain, d.job_id)
            if state is None:
                return False
            if started_by(state, self.s.worker_id, d.attempt, self.incarnation):
                r.seq = last  # our own `started` landed, though its append looked failed
                if state.cancel_requested:
                    r.cancel.set()  # and a cancel came meanwhile, while we did not hold it
                return True
            if held_by_gone_run(state, self.s.worker_id, d.attempt, self.incarnation):
                # Told of an attempt an earlier run of this worker started: say it is not running.
                r.seq = last
                reason = f"worker {self.s.worker_id} restarted while running attempt {d.attempt}"
                await self._hand_back(r, reason, state)
                return False
            try:
                event = decide_start(state, self.s.worker_id, d.attempt, incarnation=self.incarnation)
            except DomainError as exc:
                log.info("skipping stale assignment: %s", exc)
                return False
            try:
                r.seq = (await self.store.append(job_append(event, last))).seq
            except WrongExpectedSequence:
                return False
            return not isinstance(event, Cancelled)

    async def _run(self, r: Running) -> None:
        d = r.dispatched
        sink = LogSink(
            self._out_pub or self.store.publisher, d.domain, d.job_id, d.attempt, self.s.output_limits
        )
        started_at = time.monotonic()
        try:
            try:
                ctx = RunContext(d.job_id, d.domain, d.attempt, d.spec, sink, r.cancel, self._groups)
                kind = d.spec.executor.__struct_config__.tag
                with tracing.span("worker", f"execute {kind}", attributes={"jobstream.executor": str(kind)}):
                    outcome = await execute(ctx)
            except Exception as exc:
                log.exception("executor crashed on job %s", d.job_id)
                outcome = Outcome("failed", error=f"worker error: {type(exc).__name__}: {exc}")
            if outcome.duration_s == 0.0:
                outcome = Outcome(
                    outcome.status, outcome.exit_code, outcome.error, time.monotonic() - started_at,
                    outcome.result,
                )  # fmt: skip
            await sink.flush()
            if r.abandoned is None:
                await self._report(r, outcome)
            elif r.abandoned == "fenced":
                self.fenced.append(r)
        finally:
            if r.abandoned != "shutdown":
                self.running.pop(d.job_id, None)
            self.jobs_done += 1
            self.slot_freed.set()

    async def _report(self, r: Running, outcome: Outcome) -> None:
        """Append the attempt's outcome, fenced on our last append; re-decide if the job moved on."""
        d = r.dispatched
        state = state_from_dispatch(d, started_at=d.at)
        if r.cause is not None:
            state = msgspec.structs.replace(state, last_event_id=r.cause)
        current = trace.get_current_span()
        current.set_attribute("jobstream.outcome", outcome.status)
        if outcome.exit_code is not None:
            current.set_attribute("jobstream.exit_code", outcome.exit_code)
        if outcome.status != "succeeded":
            current.set_status(Status(StatusCode.ERROR, outcome.error or outcome.status))
        event = decide_outcome(state, self.s.worker_id, d.attempt, outcome)
        expected = r.seq
        deadline = time.monotonic() + REPORT_DEADLINE_S
        delay = 0.1
        while True:
            try:
                await self.store.append(job_append(event, expected))
                return
            except WrongExpectedSequence:
                real, expected = await self.store.read_job(d.domain, d.job_id)
                if real is None:
                    return
                try:
                    event = decide_outcome(real, self.s.worker_id, d.attempt, outcome)
                except DomainError as exc:
                    log.info("outcome of job %s dropped: %s", d.job_id, exc)
                    return
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error("gave up reporting job %s: %s", d.job_id, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _hand_back(self, r: Running, reason: str, known: JobState | None = None) -> None:
        """Give the attempt back through `decide_requeue`: the requeue cap holds, and a cancel
        requested meanwhile (which makes r.seq stale) ends the job instead of being lost.
        `known`: the job's state as just read, when it is at hand."""
        d = r.dispatched
        state = known or state_from_dispatch(d, started_at=d.at)
        expected = r.seq
        try:
            for _ in range(5):
                try:
                    event = decide_requeue(state, self.s.worker_id, d.attempt, reason, actor=self.actor)
                except DomainError as exc:
                    log.info("hand-back of job %s not needed: %s", d.job_id, exc)
                    break
                try:
                    await self.store.append(job_append(event, expected))
                    break
                except WrongExpectedSequence:
                    real, expected = await self.store.read_job(d.domain, d.job_id)
                    if real is None:
                        break
                    state = real
        except Exception:
            log.exception("could not hand back job %s", d.job_id)
        self.running.pop(d.job_id, None)

    # ---- control messages -----------------------------------------------------------

    async def _on_cancel(self, msg: Msg) -> None:
        """Only a well-formed request of our domain counts: with token logins other clients share
        the account, and the subject alone proves nothing."""
        try:
            event = decode_event(msg.subject, msg.data)
        except DecodeError:
            return
        if not isinstance(event, CancelRequested) or event.domain != self.s.domain:
            return
        r = self.running.get(event.job_id)
        if r is not None:
            r.cancel.set()
            return
        # Not ours yet (or never): remember it, in case its assignment is still on its way.
        now = time.monotonic()
        self._early_cancels = {j: t for j, t in self._early_cancels.items() if now - t < EARLY_CANCEL_KEEP_S}
        self._early_cancels[event.job_id] = now

    async def _on_requeued(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.subject, msg.data)
        except DecodeError:
            return
        if (
            not isinstance(event, Requeued)
            or event.worker_id != self.s.worker_id
            or event.domain != self.s.domain
        ):
            return
        r = self.running.get(event.job_id)
        if r is not None and r.dispatched.attempt == event.attempt:
            r.abandoned = "requeued"
            r.cancel.set()

    # ---- liveness -------------------------------------------------------------------

    def _on_nats_error(self, exc: Exception) -> None:
        """A login the broker keeps refusing (revoked or expired token, disabled domain) will
        not come back by retrying: stop, and say why, after a grace period for blips."""
        if "authorization violation" not in str(exc).lower():
            return
        now = time.monotonic()
        if self._refused_since is None:
            self._refused_since = now
        elif now - self._refused_since > LOGIN_REFUSED_GIVE_UP_S and self.gave_up is None:
            self.gave_up = (
                f"the broker has refused worker {self.s.worker_id}'s login for "
                f"{LOGIN_REFUSED_GIVE_UP_S:.0f}s: its token is revoked or expired, or domain "
                f"{self.s.domain} is disabled"
            )
            log.error("%s; stopping", self.gave_up)
            if self._stop is not None:
                self._stop.set()

    def _on_reconnected(self) -> None:
        self._refused_since = None
        # Cancels are plain subscriptions: any sent while we were away are gone; ask the log.
        task = asyncio.create_task(self._recheck_cancels())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _recheck_cancels(self) -> None:
        """Honour cancels of held jobs that the log has and we may have missed."""
        for r in list(self.running.values()):
            if r.cancel.is_set():
                continue
            try:
                state, _ = await self.store.read_job(r.dispatched.domain, r.job_id)
            except Exception as exc:
                log.warning("could not re-check job %s for a cancel: %s", r.job_id, exc)
                continue
            if state is not None and state.cancel_requested:
                log.info("job %s was cancelled while we were not listening", r.job_id)
                r.cancel.set()

    async def _abandon_all(self) -> None:
        """Cut off for good: kill what runs; the dispatcher requeues it once our beats stop."""
        self.healthy = False
        for r in self.running.values():
            r.abandoned = "fenced"
            r.cancel.set()
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    async def _heartbeat_once(self) -> bool:
        self.hb_seq += 1
        beat = Heartbeat(
            worker_id=self.s.worker_id,
            domain=self.s.domain,
            seq=self.hb_seq,
            running=list(self.running),
            max_concurrency=self.s.max_concurrency,
            draining=self.draining,
        )
        try:
            await self.js.publish(
                subjects.heartbeat(self.s.domain, self.s.worker_id), encode(beat), timeout=HEARTBEAT_TIMEOUT_S
            )
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)
            return False
        self.last_heartbeat_ok = time.monotonic()
        return True

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        rule = FenceRule(self.s.fence_disconnected_s, self.s.fence_unacked_s)
        disconnected_since: float | None = None
        while True:
            ok = await self._heartbeat_once()
            now = time.monotonic()
            if self.nc.is_connected:
                disconnected_since = None
            elif disconnected_since is None:
                disconnected_since = now
            if ok and not self.healthy:
                await self._recover()
            elif not ok and self.healthy:
                why = rule.reason(now, self.last_heartbeat_ok, disconnected_since)
                if why is not None:
                    self._fence(why)
            await asyncio.sleep(self.s.heartbeat_interval_s)

    def _fence(self, why: str) -> None:
        """The dispatcher may give our jobs away now, so stop running them."""
        log.error("%s: killing %d jobs", why, len(self.running))
        self.healthy = False
        for r in self.running.values():
            r.abandoned = "fenced"
            r.cancel.set()

    async def _recover(self) -> None:
        log.warning("heartbeats get through again; handing back %d killed jobs", len(self.fenced))
        if self._puller is not None:
            self._puller.reset()
        fenced, self.fenced = self.fenced, []
        for r in fenced:
            await self._hand_back(r, "worker lost contact with NATS")
        self.healthy = True
        self.slot_freed.set()
        await self._recheck_cancels()
