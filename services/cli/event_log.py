"""Reading stored messages with their headers and times, and republishing an export into a server.

`read` and `follow` serve `jobstream events export` and `tail`; `restore` serves `events import`,
which keeps every event's stream sequence (a hole in the export, a purged head or another
domain's events, becomes a deleted message at the same place), so a read model rebuilt from the
new server equals the original's, sequences and all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from events.store import MSG_ID, Appended, Publisher
from events.streams import (
    DUPLICATE_WINDOW_S,
    EVENTS_STREAM,
    FOLLOW_IDLE_HEARTBEAT_S,
    LOGS_STREAM_PREFIX,
    log_streams,
    provision,
    provision_logs,
)
from events.subjects import EVENTS_PREFIX, LOGS_PREFIX
from services.cli.event_records import Record, iso
from services.runtime.connect import jetstream

BATCH = 2000
# What nats-py may hold for the reader while a batch is written (past it, the ordered consumer is
# rebuilt from the last sequence seen: slower, never wrong). Bounds the export's memory.
PENDING_MSGS = 50_000
PENDING_BYTES = 64 * 1024 * 1024
IDLE_TIMEOUT_S = 5.0
POLL_S = 1.0
CONSUMER_INACTIVE_S = 60.0
IN_FLIGHT = 1000  # unanswered publishes during an import
ACK_TIMEOUT_S = 30.0
DELETES = 256  # hole fillers deleted at a time
# Published into a hole of the sequence and deleted at once, so the next event lands at its
# original sequence. It never outlives the import; nothing reads this subject.
FILLER_SUBJECT = f"{EVENTS_PREFIX}._import.gap._.filler"
ORIGINAL_SEQ = "Jobstream-Original-Seq"
ORIGINAL_TIME = "Jobstream-Original-Time"
ORIGINAL_MSG_ID = "Jobstream-Original-Msg-Id"
# Conditions of the original append (they name the original server's sequences), not data.
CONDITION_PREFIX = "Nats-Expected-"

Start = int | datetime | None  # a stream sequence, a time, or (None) only what comes next


class ImportRefused(RuntimeError):
    """The target cannot take the import as asked (not empty, a record out of place)."""


def ack_fields(msg: Msg) -> tuple[int, int, int]:
    """(stream sequence, timestamp in ns, messages pending) from a delivery's ack subject:
    `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` or the 12-token form."""
    tokens = msg.reply.split(".") if msg.reply else []
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[7]), int(tokens[8])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[9]), int(tokens[10])
    meta = msg.metadata
    return int(meta.sequence.stream), int(meta.timestamp.timestamp() * 1e9), int(meta.num_pending)


def record_of(stream: str, msg: Msg) -> tuple[Record, int]:
    seq, ts, pending = ack_fields(msg)
    return Record(stream, seq, msg.subject, ts, dict(msg.headers or {}), msg.data), pending


def _deliver(start: Start) -> dict[str, object]:
    if start is None:
        return {"deliver_policy": api.DeliverPolicy.NEW}
    if isinstance(start, datetime):
        return {"deliver_policy": api.DeliverPolicy.BY_START_TIME, "opt_start_time": start}
    return {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": max(1, start)}


async def read(
    nc: NATS, stream: str, filter_subject: str, start: int | datetime, until_seq: int | None = None
) -> AsyncIterator[list[Record]]:
    """Batches of the stored messages on `filter_subject` from `start` through `until_seq` (default:
    the stream's last sequence when the read began), in order.

    An ordered consumer with a callback: nats-py's pull `fetch` returned a handful of messages per
    request here, and a callback per message costs less than a `next_msg` per message. What waits
    between two batches is bounded by the consumer's flow control and the pending limits."""
    js = jetstream(nc)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return
    end = int(info.state.last_seq) if until_seq is None else min(until_seq, int(info.state.last_seq))
    if isinstance(start, int) and start > end:
        return
    batch: list[Record] = []
    finished = False
    ready = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        nonlocal finished
        if finished:
            return
        record, pending = record_of(stream, msg)
        if record.seq > end:
            finished = True
        else:
            batch.append(record)
            finished = record.seq >= end or pending == 0
        if finished or len(batch) >= BATCH:
            ready.set()

    config = api.ConsumerConfig(**_deliver(start))  # type: ignore[arg-type]
    sub = await js.subscribe(
        filter_subject, stream=stream, ordered_consumer=True, config=config, cb=on_msg,
        pending_msgs_limit=PENDING_MSGS, pending_bytes_limit=PENDING_BYTES,
    )  # fmt: skip
    idle_since = time.monotonic()
    try:
        while True:
            try:
                await asyncio.wait_for(ready.wait(), POLL_S)
            except TimeoutError:
                if not batch and not (await sub.consumer_info()).num_pending:
                    return  # nothing (more) matches: the rest was deleted, or none was there
                if time.monotonic() - idle_since > IDLE_TIMEOUT_S * 6:
                    raise TimeoutError(f"{stream} stopped answering for {IDLE_TIMEOUT_S * 6:.0f}s") from None
                continue
            finally:
                ready.clear()
            idle_since = time.monotonic()
            if batch:
                out, batch = batch, []
                yield out
            if finished:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def follow(js: JetStreamContext, filter_subject: str, start: Start) -> AsyncIterator[Record | None]:
    """EVENTS on `filter_subject` from `start` on, as they land (an ordered consumer, which nats-py
    rebuilds after a server restart); None each second without one, so callers can stop."""
    config = api.ConsumerConfig(idle_heartbeat=FOLLOW_IDLE_HEARTBEAT_S, **_deliver(start))  # type: ignore[arg-type]
    sub = await js.subscribe(filter_subject, stream=EVENTS_STREAM, ordered_consumer=True, config=config)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=POLL_S)
            except TimeoutError:
                yield None
                continue
            yield record_of(EVENTS_STREAM, msg)[0]
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def output_streams(nc: NATS, domain: str | None) -> list[str]:
    """The output streams to export: one domain's, or every domain's."""
    names = sorted(await log_streams(jetstream(nc)))
    return [n for n in names if domain is None or n == f"{LOGS_STREAM_PREFIX}{domain}"]


@dataclass
class Restored:
    events: int = 0
    outputs: int = 0
    first_seq: int = 0
    last_seq: int = 0
    renumbered: int = 0  # events that could not keep their sequence (the target was not empty)
    duplicates: int = 0  # dropped by the server: their Nats-Msg-Id was there within its window
    holes: int = 0  # sequences recreated as deleted messages
    fillers: list[int] = field(default_factory=list)


def import_headers(record: Record, recent_ids: dict[str, float], now: float) -> dict[str, str]:
    """The original headers, less the original append's conditions, plus where the event came from.

    A `Nats-Msg-Id` already published in this import within the duplicate window would make the
    server drop this event as a duplicate (the original server saw the two further apart); it is
    kept under another name instead."""
    headers = {k: v for k, v in record.headers.items() if not k.startswith(CONDITION_PREFIX)}
    msg_id = headers.get(MSG_ID)
    if msg_id is not None:
        seen = recent_ids.get(msg_id)
        if seen is not None and now - seen < DUPLICATE_WINDOW_S:
            headers[ORIGINAL_MSG_ID] = headers.pop(MSG_ID)
        else:
            recent_ids.pop(msg_id, None)  # to the end: the dict stays in publish order
            recent_ids[msg_id] = now
    headers[ORIGINAL_SEQ] = str(record.seq)
    headers[ORIGINAL_TIME] = iso(record.time_ns)
    return headers


async def events_state(js: JetStreamContext) -> tuple[int, int]:
    """(messages, last sequence) of EVENTS, after making sure the streams exist."""
    await provision(js)
    info = await js.stream_info(EVENTS_STREAM)
    return int(info.state.messages), int(info.state.last_seq)


async def restore(nc: NATS, records: Iterable[Record], force: bool = False) -> Restored:
    """Republish `records` in order; EVENTS must be empty unless `force`.

    Into an empty stream events keep their sequences; with `force` they are appended after what
    is there. Output goes to its domain's stream (created here), in order."""
    js = jetstream(nc)
    messages, last = await events_state(js)
    if (messages or last) and not force:
        raise ImportRefused(
            f"stream {EVENTS_STREAM} already holds {messages} events (last seq {last}); import needs an "
            f"empty server (or --force to append after them, with new sequences)"
        )
    importer = _Importer(js, Publisher(nc), keep=not (messages or last), next_seq=last + 1)
    try:
        for record in records:
            await importer.add(record)
        await importer.settle(0)
    finally:
        fillers = importer.done.fillers
        for start in range(0, len(fillers), DELETES):  # each hole is a deleted message, as it was
            await asyncio.gather(
                *(js.delete_msg(EVENTS_STREAM, seq) for seq in fillers[start : start + DELETES])
            )
    return importer.done


class _Importer:
    """The state of one import: what is in flight, where the next event lands, what was seen."""

    def __init__(self, js: JetStreamContext, publisher: Publisher, keep: bool, next_seq: int) -> None:
        self.js = js
        self.publisher = publisher
        self.keep = keep  # sequences are kept only in an empty stream
        self.started = not keep
        self.next_seq = next_seq
        self.done = Restored()
        self.inflight: deque[tuple[asyncio.Future[Appended], Record | None]] = deque()
        self.recent_ids: dict[str, float] = {}
        self.made_logs: set[str] = set()
        self.last_by_stream: dict[str, int] = {}

    async def settle(self, limit: int) -> None:
        """Take the acks while more than `limit` are unanswered. An answered one is taken without
        a wait: awaiting each publish's ack let nats-py flush every publish on its own."""
        inflight, done = self.inflight, self.done
        while inflight and (len(inflight) > limit or inflight[0][0].done()):
            fut, record = inflight.popleft()
            ack = fut.result() if fut.done() else await asyncio.wait_for(fut, ACK_TIMEOUT_S)
            if record is None:
                done.fillers.append(ack.seq)
            elif ack.duplicate:  # its Nats-Msg-Id is there already (an import run again within 2 minutes)
                done.duplicates += 1

    async def add(self, record: Record) -> None:
        previous = self.last_by_stream.get(record.stream, 0)
        if record.seq <= previous:
            raise ImportRefused(f"{record.stream} seq {record.seq} comes after seq {previous}: not in order")
        self.last_by_stream[record.stream] = record.seq
        if record.stream == EVENTS_STREAM:
            await self._place(record)
        elif record.stream.startswith(LOGS_STREAM_PREFIX):
            domain = record.stream.removeprefix(LOGS_STREAM_PREFIX)
            if not record.subject.startswith(f"{LOGS_PREFIX}.{domain}."):
                raise ImportRefused(f"{record.stream} seq {record.seq}: {record.subject} is not its output")
            if domain not in self.made_logs:
                await self.settle(0)
                await provision_logs(self.js, [domain])
                self.made_logs.add(domain)
            self.done.outputs += 1
        else:
            raise ImportRefused(f"seq {record.seq}: stream {record.stream!r} is not one jobstream imports")
        now = time.monotonic()
        headers = import_headers(record, self.recent_ids, now)
        self.inflight.append((await self.publisher.publish(record.subject, record.data, headers), record))
        await self.settle(IN_FLIGHT)
        self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop the msg ids published longer ago than the duplicate window: the server has too.
        The dict keeps insertion order, which is publish order, so the oldest come first."""
        recent = self.recent_ids
        while recent:
            oldest = next(iter(recent))
            if now - recent[oldest] < DUPLICATE_WINDOW_S:
                return
            del recent[oldest]

    async def _place(self, record: Record) -> None:
        """Make the event land at its own sequence: start the stream there, or fill the hole before it."""
        if not record.subject.startswith(f"{EVENTS_PREFIX}."):
            raise ImportRefused(f"seq {record.seq}: {record.subject} is not an event subject")
        done = self.done
        if not self.started:
            self.started = True
            if record.seq > 1:
                await self.js.purge_stream(EVENTS_STREAM, seq=record.seq)  # an empty stream then starts there
                self.next_seq = record.seq
        while self.keep and self.next_seq < record.seq:
            self.inflight.append((await self.publisher.publish(FILLER_SUBJECT, b""), None))
            self.next_seq += 1
            done.holes += 1
            await self.settle(IN_FLIGHT)
        if record.seq != self.next_seq:
            done.renumbered += 1
        done.first_seq = done.first_seq or record.seq
        done.last_seq = record.seq
        done.events += 1
        self.next_seq += 1
