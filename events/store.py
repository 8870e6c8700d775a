"""The event store: append with optimistic concurrency and idempotency, read an aggregate back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry.propagate import inject

from events import subjects
from events.base import Conflict, Event
from events.codec import decode_event, encode
from events.domain import DomainEvent, DomainState, evolve_domain
from events.job import Dispatched, JobEvent, JobState, evolve
from events.schedule import ScheduleEvent, ScheduleState, evolve_schedule
from events.streams import EVENTS_STREAM
from events.template import TemplateEvent, TemplateState, evolve_template

S = TypeVar("S")

WRONG_LAST_SEQUENCE = 10071
APPEND_TIMEOUT_S = 10.0

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


def job_append(event: JobEvent, expected: int, msg_id: str | None = None) -> Append:
    """An append to a job, fenced on the sequence of the job's last event (0: job must not exist)."""
    return Append(
        subject=job_subject(event),
        event=event,
        expected=expected,
        scope=subjects.job_all(event.domain, event.job_id),
        msg_id=msg_id,
    )


def schedule_append(event: ScheduleEvent, expected: int, msg_id: str | None = None) -> Append:
    """An append to a schedule, fenced like a job's (0: the schedule must not exist)."""
    return Append(
        subject=subjects.schedule(event.domain, event.schedule_id, event.type),
        event=event,
        expected=expected,
        scope=subjects.schedule_all(event.domain, event.schedule_id),
        msg_id=msg_id,
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


def _headers(item: Append) -> dict[str, str]:
    headers: dict[str, str] = {}
    if item.expected is not None:
        headers[EXPECTED_LAST_SUBJECT_SEQ] = str(item.expected)
        if item.scope:
            headers[EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = item.scope
    if item.msg_id:
        headers[MSG_ID] = item.msg_id
    inject(headers)
    return headers


class AppendError(RuntimeError):
    """The server refused an append for a reason other than concurrency."""

    def __init__(self, code: int | None, err_code: int | None, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code


class Publisher:
    """Pipelined JetStream publishes: many in flight, each answered on its own inbox token.

    nats-py's publish_async never resolves its future when the server answers with an
    API error (the error escapes into the connection's error callback), so conditional
    appends, which are refused by design, need this small replacement.
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
        await self.nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
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

    async def append(self, item: Append) -> Appended:
        [result] = await self.append_many([item])
        if isinstance(result, BaseException):
            raise result
        return result

    async def append_many(self, items: Sequence[Append]) -> list[Appended | BaseException]:
        """Pipeline many appends; each lands or fails on its own (no cross-item atomicity)."""
        futures = [
            await self.publisher.publish(item.subject, encode(item.event), _headers(item)) for item in items
        ]
        results: list[Appended | BaseException] = []
        for fut in futures:
            try:
                results.append(await asyncio.wait_for(fut, APPEND_TIMEOUT_S))
            except TimeoutError as exc:
                self.publisher.abandon(fut)
                results.append(exc)
            except Exception as exc:
                results.append(exc)
        return results

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
