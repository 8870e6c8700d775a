"""Read the whole EVENTS stream once, fast: an ephemeral pull consumer read over a bare socket.

nats-py builds a Msg object, parses headers and runs a callback task per message, which held
a read of the log to about 140k messages/s before any check ran. The audit needs only
(sequence, subject, payload), so the consumer is created through nats-py (stream info,
credentials, TLS, server lists stay nats-py's), and its deliveries are read here on a second
plain connection that speaks just enough of the NATS protocol: CONNECT, SUB, PUB of pull
requests, PING/PONG, and MSG/HMSG frames, whose reply subject carries the stream sequence.
A TLS server falls back to nats-py's own fetch (slower, same result).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import ParseResult

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from events.store import backoff_s
from events.streams import EVENTS_STREAM
from services.runtime.connect import jetstream

Raw = tuple[int, str, bytes]
T = TypeVar("T")
BATCH = 20_000
CHUNK_BYTES = 4 * 1024 * 1024
IDLE_TIMEOUT_S = 10.0
CONSUMER_INACTIVE_S = 60.0
# How long the stream's info and the consumer's creation are tried again: a JetStream API
# request times out or is refused while a cluster elects a leader (4 - 10 s, README
# "Reliability"), which is no reason to call the log unreadable.
SETUP_DEADLINE_S = 30.0


class ReadError(RuntimeError):
    """The log could not be read (server refused, connection lost, stream missing)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    first_seq: int
    last_seq: int


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, NotFoundError):
        return False
    if isinstance(exc, NatsTimeout | ServiceUnavailableError):
        return True
    return isinstance(exc, APIError) and exc.code in (408, 503)


async def retried(call: Callable[[], Awaitable[T]], deadline_s: float = SETUP_DEADLINE_S) -> T:
    """`call()`, tried again with backoff on a timeout or a 503 until `deadline_s` has passed."""
    end = time.monotonic() + deadline_s
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not _transient(exc) or time.monotonic() >= end:
                raise
        await asyncio.sleep(min(backoff_s(attempt), max(0.0, end - time.monotonic())))
        attempt += 1


async def bounds(nc: NATS, stream: str = EVENTS_STREAM) -> Bounds:
    try:
        info = await retried(lambda: jetstream(nc).stream_info(stream))
    except NotFoundError as exc:
        raise ReadError(f"stream {stream} does not exist") from exc
    return Bounds(int(info.state.first_seq), int(info.state.last_seq))


async def read_stream(
    nc: NATS, start: int, last_seq: int, stream: str = EVENTS_STREAM
) -> AsyncIterator[list[Raw]]:
    """Batches of (seq, subject, payload) from `start` through `last_seq`, in order; deleted
    messages are simply absent (the caller sees the gap)."""
    if start > last_seq:
        return
    js = jetstream(nc)
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start, inactive_threshold=CONSUMER_INACTIVE_S, mem_storage=True, num_replicas=1,
        max_waiting=8,
    )  # fmt: skip
    info = await retried(lambda: js.add_consumer(stream, config=config))
    name = info.name
    try:
        where = nc.connected_url
        if where is None or where.scheme == "tls":
            source = _read_with_nats_py(nc, stream, name, last_seq)
        else:
            source = _read_raw(where, stream, name, last_seq)
        async for batch in source:
            yield batch
    finally:
        # Gone already, or the connection is: then it expires on its own (inactive_threshold).
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)


async def _read_with_nats_py(nc: NATS, stream: str, name: str, last_seq: int) -> AsyncIterator[list[Raw]]:
    from events.store import stream_seq

    sub = await jetstream(nc).pull_subscribe_bind(durable=name, stream=stream)
    try:
        seq = 0
        while seq < last_seq:
            try:
                msgs = await sub.fetch(1000, timeout=IDLE_TIMEOUT_S)
            except NatsTimeout:
                return  # nothing more: the tail was deleted (the caller sees the gap)
            batch = [(stream_seq(m), m.subject, m.data) for m in msgs]
            seq = batch[-1][0] if batch else seq
            yield [b for b in batch if b[0] <= last_seq]
    finally:
        await sub.unsubscribe()


async def _read_raw(where: ParseResult, stream: str, name: str, last_seq: int) -> AsyncIterator[list[Raw]]:
    host, port = where.hostname or "127.0.0.1", where.port or 4222
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=CHUNK_BYTES), 10)
    except (OSError, TimeoutError) as exc:
        raise ReadError(f"cannot connect to {host}:{port}: {exc}") from exc
    try:
        await _handshake(reader, writer, where)
        inbox = f"_INBOX.audit.{secrets.token_hex(8)}"
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
        request = json.dumps({"batch": BATCH, "expires": int(IDLE_TIMEOUT_S * 1e9)}).encode()
        pull = b"PUB %s %s %d\r\n%s\r\n" % (next_subject.encode(), inbox.encode(), len(request), request)
        writer.write(b"SUB %s 1\r\n" % inbox.encode() + pull + pull)  # two requests in flight
        await writer.drain()
        outstanding = 2 * BATCH
        data = b""
        seq = 0
        while seq < last_seq:
            try:
                chunk = await asyncio.wait_for(reader.read(CHUNK_BYTES), IDLE_TIMEOUT_S * 2)
            except TimeoutError as exc:
                raise ReadError(f"no answer from {host}:{port} for {IDLE_TIMEOUT_S * 2:.0f}s") from exc
            if not chunk:
                raise ReadError(f"{host}:{port} closed the connection")
            data = data + chunk if data else chunk
            batch, data, statuses, pings = _parse(data)
            if pings:
                writer.write(b"PONG\r\n" * pings)
            if batch:
                seq = batch[-1][0]
                outstanding -= len(batch)
                if seq >= last_seq:
                    yield [b for b in batch if b[0] <= last_seq]
                    return
                yield batch
            for status in statuses:
                if status.startswith(("404", "408")):
                    return  # a pull found nothing more: the tail was deleted (the caller sees the gap)
                if not status.startswith("100"):
                    raise ReadError(f"the server ended the read: {status}")
            while outstanding < BATCH:
                writer.write(pull)
                outstanding += BATCH
            await writer.drain()
    finally:
        writer.close()


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: ParseResult) -> None:
    info_line = await asyncio.wait_for(reader.readline(), 10)
    if not info_line.startswith(b"INFO"):
        raise ReadError(f"not a NATS server: {info_line[:80]!r}")
    info: dict[str, Any] = json.loads(info_line[5:])
    if info.get("tls_required"):
        raise ReadError("the server requires TLS")
    connect: dict[str, Any] = {
        "verbose": False, "pedantic": False, "name": "jobstream-audit", "lang": "python", "version": "0",
        "protocol": 1, "headers": True, "no_responders": True,
    }  # fmt: skip
    if where.username and where.password:
        connect |= {"user": where.username, "pass": where.password}
    elif where.username:
        connect["auth_token"] = where.username
    writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
    await writer.drain()
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if line.startswith(b"PONG"):
            return
        if line.startswith(b"-ERR") or not line:
            raise ReadError(f"the server refused the login: {line.decode(errors='replace').strip()}")


# `MSG <subject> <sid> $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<...> <size>` or the HMSG
# form with a header size; other frames (statuses, the 12-token ack form, PING) take the slow path.
_DELIVERY = re.compile(
    rb"H?MSG ([^ ]+) [^ ]+ \$JS\.ACK\.[^. ]+\.[^. ]+\.\d+\.(\d+)\.[^ ]* (?:(\d+) )?(\d+)\r\n"
)


def _parse(data: bytes) -> tuple[list[Raw], bytes, list[str], int]:
    """The complete frames in `data`: deliveries, the unparsed rest, status lines, PINGs."""
    out: list[Raw] = []
    statuses: list[str] = []
    pings = 0
    pos = 0
    end = len(data)
    find = data.find
    fast = _DELIVERY.match
    append = out.append
    while pos < end:
        m = fast(data, pos)
        if m is not None:  # the common frame, in one regex: subject, sequence, sizes
            body = m.end()
            hlen = int(m[3] or 0)
            stop = body + int(m[4])
            if stop + 2 > end:
                break
            append((int(m[2]), m[1].decode(), data[body + hlen : stop]))
            pos = stop + 2
            continue
        eol = find(b"\r\n", pos)
        if eol < 0:
            break
        head = data[pos:eol].split(b" ")
        op = head[0]
        if op == b"MSG":
            size = int(head[-1])
            body = eol + 2
            if body + size + 2 > end:
                break
            if len(head) == 5:
                out.append((_seq(head[3]), head[1].decode(), data[body : body + size]))
            pos = body + size + 2
        elif op == b"HMSG":
            hlen, total = int(head[-2]), int(head[-1])
            body = eol + 2
            if body + total + 2 > end:
                break
            if len(head) == 6:
                out.append((_seq(head[3]), head[1].decode(), data[body + hlen : body + total]))
            else:  # a status for our pull requests: "NATS/1.0 408 Request Timeout"
                statuses.append(data[body + 9 : data.find(b"\r\n", body)].decode(errors="replace"))
            pos = body + total + 2
        elif op == b"PING":
            pings += 1
            pos = eol + 2
        elif op == b"-ERR":
            raise ReadError(f"server error: {data[pos:eol].decode(errors='replace')}")
        else:  # +OK, PONG, INFO
            pos = eol + 2
    return out, data[pos:], statuses, pings


def _seq(reply: bytes) -> int:
    """`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...` (9 tokens) or the 12-token form."""
    tokens = reply.split(b".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])
