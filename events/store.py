"""The event store: append with optimistic concurrency and idempotency, read an aggregate back."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.context import Context, get_current
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from events import sampling, subjects, tracecontext
from events.base import Conflict, Event
from events.codec import decode_event, encode
from events.domain import DomainEvent, DomainState, evolve_domain
from events.job import Dispatched, JobEvent, JobState, Started, evolve
from events.schedule import ScheduleEvent, ScheduleState, evolve_schedule
from events.streams import EVENTS_STREAM
from events.template import TemplateEvent, TemplateState, evolve_template

S = TypeVar("S")

WRONG_LAST_SEQUENCE = 10071
# A clustered stream's pre-check refuses a fenced append with this when the scope moved, and also
# while another append to the subject is still "in process": a conflict only if the scope moved.
CLUSTERED_WRONG_LAST_SEQUENCE = 10164
# JetStream temporarily unavailable; msg id in process; expected last subject sequence unavailable.
TRANSIENT_ERR_CODES = frozenset({10008, 10158, 10163})
# No responders (no stream leader, e.g. during an election), request timeout, the ingress's "retry".
TRANSIENT_CODES = frozenset({503, 408, 429})
TRANSIENT_TEXT = ("temporarily unavailable", "in process", "no responders")

# One deadline per append / append_many call. Followers wait 4-9 s before campaigning and a leader
# notices a lost quorum after 10 s (nats-server raft.go); a leader kill was measured at 5.3 s of
# 503s. 20 s rides out a worst-case election with room to spare, and no longer: past it the
# caller hears AppendUncertain and decides (redelivery, 503 to the client) instead of hanging.
APPEND_DEADLINE_S = 20.0
# The first round of publishes waits this long for its acks before the unanswered ones are sent
# again (when that is safe): a healthy server acks in milliseconds, and a reply lost with a dying
# leader or a dropped connection is never coming. Each unanswered round doubles the wait, so a
# slow but healthy server is not flooded with resends.
ATTEMPT_TIMEOUT_S = 2.0
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
# A fenced append lands only while its scope ends at `expected`, so if a copy of it landed, that
# copy is the first message after `expected`: a conflict reads the one at `expected` and the next.
SCAN_LIMIT = 2

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
MSG_ID = "Nats-Msg-Id"


class WrongExpectedSequence(Conflict):
    """Someone appended to the aggregate since we read it: re-read and decide again."""


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    subject: str
    event: Event


@dataclass(frozen=True, slots=True)
class Append:
    """One append request: the event, where it goes, and what must hold for it to land."""

    subject: str
    event: Event
    expected: int | None = None
    scope: str | None = None
    msg_id: str | None = None
    # The trace context the append belongs to (the job's, the tick's); None: the current one.
    context: Context | None = None
    # Links of its producer span (a batch request's jobs: each its own trace, linked to it).
    links: tuple[Link, ...] = ()


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a JetStream delivery, read straight from its ack subject.

    nats-py's `msg.metadata` parses every field into objects; on hot paths that read only
    the sequence this was a visible share of CPU. Both ack-subject layouts are handled:
    `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...` (9 tokens) and the one with
    domain and account hash (12 tokens).
    """
    tokens = msg.reply.split(".") if msg.reply else []
    if len(tokens) == 9:
        return int(tokens[5])
    if len(tokens) >= 11:
        return int(tokens[7])
    return int(msg.metadata.sequence.stream)


def job_subject(event: JobEvent) -> str:
    worker = event.worker_id if isinstance(event, Dispatched) else None
    return subjects.job(event.domain, event.job_id, event.type, worker)


# Job events whose append can time out yet land, and which at most one decision per job and
# attempt can produce: a retry of one must read as a duplicate, never as a conflict. `dispatched`
# is not here: two dispatchers could place the same attempt on different workers, and the loser
# must hear "conflict", not "duplicate". `cancel_requested` is here: a job takes at most one.
IDEMPOTENT_JOB_EVENTS = frozenset(
    {"started", "succeeded", "failed", "timed_out", "cancelled", "retry_scheduled", "requeued"}
    | {"cancel_requested"}
)


def default_msg_id(event: JobEvent) -> str | None:
    """`Nats-Msg-Id` for a job event that names one decision (job, attempt, type); None for others.

    The type is part of the id, so an earlier, different decision at the same attempt can never
    be mistaken for this one."""
    if event.type not in IDEMPOTENT_JOB_EVENTS:
        return None
    attempt = int(getattr(event, "attempt", 0))
    base = f"{event.domain}.{event.job_id}.{attempt}.{event.type}"
    # A start is also one run's (incarnation's): a new run of the worker id must not take the
    # start of the run it replaces for its own (it hands that attempt back instead).
    incarnation = getattr(event, "incarnation", "") if isinstance(event, Started) else ""
    return f"{base}.{incarnation}" if incarnation else base


def job_append(
    event: JobEvent, expected: int, msg_id: str | None = None, context: Context | None = None
) -> Append:
    """An append to a job, fenced on the sequence of the job's last event (0: job must not exist).
    Without a `msg_id`, events that name one decision per attempt get `default_msg_id`."""
    return Append(
        subject=job_subject(event),
        event=event,
        expected=expected,
        scope=subjects.job_all(event.domain, event.job_id),
        msg_id=msg_id if msg_id is not None else default_msg_id(event),
        context=context,
    )


def schedule_append(
    event: ScheduleEvent, expected: int, msg_id: str | None = None, context: Context | None = None
) -> Append:
    """An append to a schedule, fenced like a job's (0: the schedule must not exist)."""
    return Append(
        subject=subjects.schedule(event.domain, event.schedule_id, event.type),
        event=event,
        expected=expected,
        scope=subjects.schedule_all(event.domain, event.schedule_id),
        msg_id=msg_id,
        context=context,
    )


def template_append(event: TemplateEvent, expected: int) -> Append:
    return Append(
        subject=subjects.template(event.domain, event.template, event.type),
        event=event,
        expected=expected,
        scope=subjects.template_all(event.domain, event.template),
    )


def domain_append(event: DomainEvent, expected: int) -> Append:
    """An append to a domain, fenced like a job's (0: the domain must not exist)."""
    return Append(
        subject=subjects.domain_event(event.domain, event.type),
        event=event,
        expected=expected,
        scope=subjects.domain_all(event.domain),
    )


def _headers(item: Append, traced: tuple[Span | None, Context] | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if item.expected is not None:
        headers[EXPECTED_LAST_SUBJECT_SEQ] = str(item.expected)
        if item.scope:
            headers[EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = item.scope
    if item.msg_id:
        headers[MSG_ID] = item.msg_id
    if traced is not None:
        # The producer span's context (and the item's baggage) travels with the event and is
        # kept in the log with it; under an unsampled parent, the parent's (flag 00).
        tracecontext.write(headers, *traced)
    return headers


_tracer = trace.get_tracer("jobstream.events")


def tracing_on() -> bool:
    """A real TracerProvider is installed; without one, appends do no span work at all."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _producer_span(item: Append) -> tuple[Span | None, Context]:
    """One PRODUCER span per append, a child of the item's trace context (else the current one).

    Under a parent that was not sampled no span is made at all (a parent-based sampler would
    drop it): the append carries the parent's context, so the trace id is still kept in the
    log, and an unsampled job costs a context lookup per append, not a span. A root decided
    not sampled ahead (events/sampling.py) is the same, with a new trace id."""
    context = item.context if item.context is not None else get_current()
    parent = trace.get_current_span(context).get_span_context()
    if parent.is_valid:
        if not parent.trace_flags.sampled:
            return None, context
    else:
        ahead = sampling.root(context)
        if ahead is not None:
            return None, ahead
    event = item.event
    attributes = {
        "messaging.system": "nats",
        "messaging.destination.name": item.subject,
        "messaging.message.id": event.id,
    }
    span = _tracer.start_span(
        f"publish {event.type}",
        context=context,
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        links=item.links,
    )
    return span, context


def _end_producer_span(span: Span, result: Appended | BaseException) -> None:
    if isinstance(result, Appended):
        span.set_attribute("messaging.nats.stream.sequence", result.seq)
        span.set_attribute("jobstream.duplicate", result.duplicate)
    else:
        span.set_status(Status(StatusCode.ERROR, f"{type(result).__name__}: {result}"))
    span.end()


class AppendError(RuntimeError):
    """The server refused an append for a reason other than concurrency."""

    def __init__(self, code: int | None, err_code: int | None, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class AppendUncertain(AppendError):
    """The deadline passed without a definite answer: the append may or may not have landed.

    Not a refusal. Retrying the same decision is safe when the append carries a msg id (it then
    reads as a duplicate) or a fence (it then conflicts, and the caller re-reads)."""

    def __init__(self, subject: str, last_error: BaseException | None, maybe_landed: bool) -> None:
        code = last_error.code if isinstance(last_error, AppendError) else None
        err_code = last_error.err_code if isinstance(last_error, AppendError) else None
        landed = "may or may not have landed" if maybe_landed else "did not land"
        last = f"{type(last_error).__name__}: {last_error}" if last_error else "no answer"
        super().__init__(code, err_code, f"append to {subject} {landed} before the deadline; last: {last}")
        self.subject = subject
        self.last_error = last_error
        self.maybe_landed = maybe_landed


ErrorKind = Literal["conflict", "transient", "maybe_conflict", "fatal"]


def classify(code: int | None, err_code: int | None, description: str) -> ErrorKind:
    """What a JetStream publish refusal means for a retry, by its codes, else by its text.

    conflict: the fence failed (re-read); maybe_conflict: the fence may have failed, look at the
    scope to know; transient: try again before the deadline; fatal: retrying will not help."""
    if err_code == WRONG_LAST_SEQUENCE:
        return "conflict"
    if err_code == CLUSTERED_WRONG_LAST_SEQUENCE:
        return "maybe_conflict"
    if err_code in TRANSIENT_ERR_CODES or code in TRANSIENT_CODES:
        return "transient"
    text = description.lower()
    if "wrong last sequence" in text:
        return "maybe_conflict"
    if any(marker in text for marker in TRANSIENT_TEXT):
        return "transient"
    return "fatal"


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)], so clients
    refused together by one election do not all come back at the same instant."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** min(attempt, 16)))
    return (rng or random).uniform(0.0, ceiling)


class Publisher:
    """Pipelined JetStream publishes: many in flight, each answered on its own inbox token.

    nats-py's publish_async never resolves its future when the server answers with an
    API error (the error escapes into the connection's error callback), so conditional
    appends, which are refused by design, need this small replacement.

    Ghost writes (W8): while disconnected, nats-py buffers publishes (`pending_size`) and sends
    them on reconnect, so a publish abandoned after its deadline may still land later. For
    appends that is harmless by construction: the ambiguous ones carry a msg id (a late copy is a
    duplicate) and every aggregate append carries a fence (a late copy of a decision that was
    overtaken is refused).
    """

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = f"{nc.new_inbox()}."
        self._pending: dict[str, asyncio.Future[Appended]] = {}
        self._sub: Subscription | None = None
        self._counter = 0

    async def _ensure(self) -> None:
        if self._sub is None:
            self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            fut.set_exception(AppendError(503, None, "no stream answers this subject"))
            return
        try:
            resp = json.loads(msg.data)
        except ValueError:
            fut.set_exception(AppendError(None, None, "unreadable publish acknowledgement"))
            return
        err = resp.get("error")
        if err:
            if err.get("err_code") == WRONG_LAST_SEQUENCE:
                fut.set_exception(WrongExpectedSequence(err.get("description", "")))
            else:
                fut.set_exception(
                    AppendError(err.get("code"), err.get("err_code"), err.get("description", ""))
                )
            return
        fut.set_result(Appended(int(resp["seq"]), bool(resp.get("duplicate"))))

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[Appended]:
        await self._ensure()
        self._counter += 1
        token = str(self._counter)
        fut: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except BaseException:
            del self._pending[token]
            raise
        return fut

    def abandon(self, fut: asyncio.Future[Appended]) -> None:
        for token, pending in list(self._pending.items()):
            if pending is fut:
                del self._pending[token]


class ReadPage(msgspec.Struct, frozen=True):
    """One answer to a read request: (seq, subject, payload) triples, and whether more follow."""

    events: list[tuple[int, str, bytes]] = []
    more: bool = False
    error: str = ""


READ_PAGE_BYTES = 512 * 1024
READ_TIMEOUT_S = 5.0
_read_page = msgspec.msgpack.Decoder(ReadPage)
_read_page_encoder = msgspec.msgpack.Encoder()


def read_page(stored: Sequence[tuple[int, str, bytes]], more: bool) -> bytes:
    return _read_page_encoder.encode(ReadPage(list(stored), more=more))


def read_error(message: str) -> bytes:
    return _read_page_encoder.encode(ReadPage(error=message))


class ReadRefused(RuntimeError):
    """The read proxy answered with an error."""


@dataclass(slots=True)
class _Try:
    """One item of an append_many call across its attempts."""

    item: Append
    payload: bytes
    headers: dict[str, str]
    fut: asyncio.Future[Appended] | None = None
    last_error: BaseException | None = None
    maybe_landed: bool = False  # an attempt went unanswered: it may have landed
    fatal: bool = False

    def landed(self) -> Appended | None:
        """The ack, if the server has answered this attempt with one."""
        fut = self.fut
        if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
            return None
        self.fut = None
        return fut.result()

    @property
    def resendable(self) -> bool:
        """Sending an unanswered append again cannot store it twice: a msg id makes the copy a
        duplicate, a fence makes it a conflict that `_resolve_conflict` recognises as ours."""
        return self.item.msg_id is not None or self.item.expected is not None


def _is_ours(t: _Try, headers: dict[str, str], data: bytes) -> bool:
    """A stored message is this append: the same msg id, or the very same payload (an event's id
    and time make its encoding unique)."""
    if t.item.msg_id is not None and headers.get(MSG_ID) == t.item.msg_id:
        return True
    return data == t.payload


def _derived_headers(subject: str, data: bytes) -> dict[str, str]:
    """What the headers of a message read through a proxy (which drops them) would say of its
    msg id, when the id is a default one: derived from the event, as `job_append` derived it."""
    try:
        event = decode_event(subject, data)
    except Exception:
        return {}
    msg_id = default_msg_id(event) if isinstance(event, JobEvent) else None
    return {MSG_ID: msg_id} if msg_id else {}


class EventStore:
    def __init__(
        self, nc: NATS, js: JetStreamContext, stream: str = EVENTS_STREAM, via_proxy: bool = False
    ) -> None:
        """`via_proxy`: read through `rd.…` requests (domain-token logins), not direct gets."""
        self.nc = nc
        self.js = js
        self.stream = stream
        self.via_proxy = via_proxy
        self.publisher = Publisher(nc)

    async def append(self, item: Append, *, deadline_s: float = APPEND_DEADLINE_S) -> Appended:
        [result] = await self.append_many([item], deadline_s=deadline_s)
        if isinstance(result, BaseException):
            raise result
        return result

    async def append_many(
        self, items: Sequence[Append], *, deadline_s: float = APPEND_DEADLINE_S
    ) -> list[Appended | BaseException]:
        """Pipeline many appends; each lands or fails on its own (no cross-item atomicity).

        Transient refusals and lost acks are retried, only for the items they hit, with jittered
        backoff, all under one deadline for the whole call; an item still open at the deadline
        ends as AppendUncertain."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        traced = [_producer_span(item) for item in items] if tracing_on() else None
        tries = [
            _Try(item, encode(item.event), _headers(item, traced[i] if traced else None))
            for i, item in enumerate(items)
        ]
        results: list[Appended | BaseException | None] = [None] * len(tries)
        todo = list(range(len(tries)))
        wait_s = ATTEMPT_TIMEOUT_S
        try:
            for attempt in range(1_000_000):  # bounded by the deadline long before this
                if attempt and loop.time() >= deadline:
                    break
                await self._send([tries[i] for i in todo if tries[i].fut is None])
                if not await self._wait_acks([tries[i] for i in todo], wait_s, deadline - loop.time()):
                    wait_s *= 2
                slow: list[int] = []
                for i in todo:  # the common case, an ack, needs no task of its own
                    landed = tries[i].landed()
                    if landed is None:
                        slow.append(i)
                    else:
                        results[i] = landed
                outcomes = await asyncio.gather(*(self._settle(tries[i], deadline) for i in slow))
                todo = [i for i, outcome in zip(slow, outcomes, strict=True) if outcome is None]
                for i, outcome in zip(slow, outcomes, strict=True):
                    if outcome is not None:
                        results[i] = outcome
                remaining = deadline - loop.time()
                if not todo or remaining <= 0:
                    break
                await asyncio.sleep(min(backoff_s(attempt), remaining))
        finally:
            for t in tries:
                if t.fut is not None and not t.fut.done():
                    self.publisher.abandon(t.fut)
        out: list[Appended | BaseException] = []
        for result, t in zip(results, tries, strict=True):
            if result is None:  # still open at the deadline
                result = AppendUncertain(t.item.subject, t.last_error, t.maybe_landed or t.fut is not None)
            out.append(result)
        if traced:
            for (span, _), result in zip(traced, out, strict=True):
                if span is not None:
                    _end_producer_span(span, result)
        return out

    async def _send(self, tries: Sequence[_Try]) -> None:
        for t in tries:
            try:
                t.fut = await self.publisher.publish(t.item.subject, t.payload, t.headers)
            except ConnectionClosedError as exc:
                t.last_error, t.fatal = exc, True
            except Exception as exc:  # e.g. the reconnect buffer is full: try again later
                t.last_error = exc

    async def _wait_acks(self, tries: Sequence[_Try], wait_s: float, remaining: float) -> bool:
        """Wait for the acks of one round together (a stalled server costs one timeout, not N);
        False if some stayed unanswered."""
        futs = [t.fut for t in tries if t.fut is not None and not t.fut.done()]
        if not futs:
            return True
        if remaining <= 0:
            return False
        _, pending = await asyncio.wait(futs, timeout=min(wait_s, remaining))
        return not pending

    async def _settle(self, t: _Try, deadline: float) -> Appended | BaseException | None:
        """The item's final result, or None to try it again."""
        if t.fatal:
            return t.last_error
        fut = t.fut
        if fut is None:
            return None
        if not fut.done():
            t.last_error = TimeoutError("no acknowledgement in time")
            if t.resendable:
                # The publish may have landed with its ack lost: send it again (see `resendable`).
                self.publisher.abandon(fut)
                t.fut, t.maybe_landed = None, True
            return None
        t.fut = None
        exc = fut.exception()
        if exc is None:
            return fut.result()
        t.last_error = exc
        if isinstance(exc, WrongExpectedSequence):
            kind: ErrorKind = "conflict"
        elif isinstance(exc, AppendError):
            kind = classify(exc.code, exc.err_code, exc.description)
        else:
            kind = "fatal"
        if kind == "transient":
            return None
        if kind == "fatal":
            return exc
        return await self._resolve_conflict(t, kind, exc, deadline)

    async def _resolve_conflict(
        self, t: _Try, kind: ErrorKind, exc: BaseException, deadline: float
    ) -> Appended | BaseException | None:
        """A (maybe) failed fence: our own earlier copy landing counts as success (a duplicate),
        an unmoved scope means the refusal was transient, anything else is a real conflict."""
        if kind == "conflict" and not (t.item.msg_id or t.maybe_landed):
            return WrongExpectedSequence(str(exc))
        try:
            since = await self._scope_since(t.item, deadline)
        except Exception as read_exc:  # cannot look now: ask the server again, within the deadline
            t.last_error = read_exc
            return None
        expected = t.item.expected or 0
        after = [m for m in since if m[0] > expected]
        if after and _is_ours(t, after[0][1], after[0][2]):
            return Appended(after[0][0], True)
        # The scope's last sequence is still `expected`: the refusal was not about the fence.
        unmoved = not after and (expected == 0 or (bool(since) and since[0][0] == expected))
        if kind == "maybe_conflict" and unmoved:
            return None
        return WrongExpectedSequence(str(exc))

    async def _scope_since(self, item: Append, deadline: float) -> list[tuple[int, dict[str, str], bytes]]:
        """The first SCAN_LIMIT messages of the fenced scope from `expected` on, with headers
        (direct gets; through a read proxy only a default msg id, derived from the event)."""
        scope = item.scope or item.subject
        seq = max(item.expected or 0, 1)
        if self.via_proxy:
            page = await self._raw_via_proxy(scope, seq - 1, deadline)
            return [(m[0], _derived_headers(m[1], m[2]), m[2]) for m in page[:SCAN_LIMIT]]
        loop = asyncio.get_running_loop()
        out: list[tuple[int, dict[str, str], bytes]] = []
        while len(out) < SCAN_LIMIT:
            timeout = deadline - loop.time()
            if timeout <= 0:
                raise TimeoutError("deadline passed while reading the scope")
            req = json.dumps({"seq": seq, "next_by_subj": scope}).encode()
            reply = await self.nc.request(
                f"$JS.API.DIRECT.GET.{self.stream}", req, timeout=min(timeout, ATTEMPT_TIMEOUT_S)
            )
            headers = dict(reply.headers or {})
            status = headers.get("Status")
            if status == "404":
                return out
            if status:
                raise AppendError(int(status), None, str(headers.get("Description", "direct get failed")))
            found = int(headers["Nats-Sequence"])
            out.append((found, headers, reply.data))
            seq = found + 1
        return out

    async def _raw_via_proxy(
        self, filter_subject: str, after: int, deadline: float
    ) -> list[tuple[int, str, bytes]]:
        """The first SCAN_LIMIT or more raw events after `after`, through the read proxy."""
        loop = asyncio.get_running_loop()
        request = subjects.read_request(filter_subject)
        out: list[tuple[int, str, bytes]] = []
        while len(out) < SCAN_LIMIT:
            timeout = min(deadline - loop.time(), READ_TIMEOUT_S)
            if timeout <= 0:
                raise TimeoutError("deadline passed while reading the scope")
            page = _read_page.decode(
                (await self.nc.request(request, str(after).encode(), timeout=timeout)).data
            )
            if page.error:
                raise ReadRefused(page.error)
            out.extend(page.events)
            if not page.more or not page.events:
                break
            after = page.events[-1][0]
        return out

    async def read(self, filter_subject: str, after: int = 0) -> list[Stored]:
        """Every event matching the filter, in order, by direct gets (no consumer state)."""
        if self.via_proxy:
            return await self._read_via_proxy(filter_subject, after)
        stored, _ = await self.read_raw_page(filter_subject, after, None)
        return [Stored(seq, subject, decode_event(subject, data)) for seq, subject, data in stored]

    async def read_raw_page(
        self, filter_subject: str, after: int, max_bytes: int | None
    ) -> tuple[list[tuple[int, str, bytes]], bool]:
        """Up to about `max_bytes` (None: all) of events after `after`, undecoded, and whether to
        ask again for more: what the read proxy hands on, one page per request."""
        out: list[tuple[int, str, bytes]] = []
        size = 0
        seq = after + 1
        while max_bytes is None or size < max_bytes:
            try:
                raw = await self.js.get_msg(
                    self.stream, seq=seq, subject=filter_subject, next=True, direct=True
                )
            except NotFoundError:
                return out, False
            assert raw.seq is not None and raw.subject is not None
            out.append((raw.seq, raw.subject, raw.data or b""))
            size += len(raw.subject) + len(raw.data or b"") + 16
            seq = raw.seq + 1
        return out, True

    async def first_headers(self, filter_subject: str) -> dict[str, str]:
        """The headers of the first event matching the filter ({} if none): a job's trace context
        is the one its `submitted` was appended in. Direct gets only (not through a read proxy)."""
        try:
            raw = await self.js.get_msg(self.stream, seq=1, subject=filter_subject, next=True, direct=True)
        except NotFoundError:
            return {}
        return dict(raw.headers or {})

    async def _read_via_proxy(self, filter_subject: str, after: int) -> list[Stored]:
        request = subjects.read_request(filter_subject)
        out: list[Stored] = []
        while True:
            reply = await self.nc.request(request, str(after).encode(), timeout=READ_TIMEOUT_S)
            page = _read_page.decode(reply.data)
            if page.error:
                raise ReadRefused(page.error)
            for seq, subject, data in page.events:
                out.append(Stored(seq, subject, decode_event(subject, data)))
                after = seq
            if not page.more:
                return out

    async def fold(
        self, filter_subject: str, evolve_fn: Callable[[S | None, Any], S | None]
    ) -> tuple[S | None, int]:
        """An aggregate's current state from its events, and the sequence of its last one (0: none)."""
        state: S | None = None
        last = 0
        for stored in await self.read(filter_subject):
            state = evolve_fn(state, stored.event)
            last = stored.seq
        return state, last

    async def read_job(self, domain: str, job_id: str) -> tuple[JobState | None, int]:
        return await self.fold(subjects.job_all(domain, job_id), evolve)

    async def read_schedule(self, domain: str, schedule_id: str) -> tuple[ScheduleState | None, int]:
        return await self.fold(subjects.schedule_all(domain, schedule_id), evolve_schedule)

    async def read_template(self, domain: str, name: str) -> tuple[TemplateState | None, int]:
        return await self.fold(subjects.template_all(domain, name), evolve_template)

    async def read_domain(self, name: str) -> tuple[DomainState | None, int]:
        return await self.fold(subjects.domain_all(name), evolve_domain)

    async def last_seq(self) -> int:
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)
