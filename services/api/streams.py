"""Reading the LOGS and EVENTS streams for the API: snapshots and live follows."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from events import subjects
from events.codec import DecodeError, decode_log
from events.streams import LEGACY_LOGS_STREAM, logs_stream

SNAPSHOT_TIMEOUT_S = 5.0
FOLLOW_POLL_S = 0.5


def lines_of(msg: Msg) -> list[dict[str, Any]]:
    """The lines of one output message (one line, or a batch), each with its attempt and position.

    `pos` is `<stream sequence>.<line index>`: where this line sits, so a reader can resume
    inside a multi-line message."""
    try:
        lines = decode_log(msg.data)
    except DecodeError:
        return []
    attempt = int(msg.subject.rsplit(".", 1)[1])
    seq = msg.metadata.sequence.stream
    return [
        {"attempt": attempt, "seq": line.seq, "stream": line.stream, "line": line.line, "at": line.at,
         "pos": f"{seq}.{i}"}
        for i, line in enumerate(lines)
    ]  # fmt: skip


def line_dict(msg: Msg) -> dict[str, Any] | None:
    """The first line of a message (kept for callers that read one-line messages)."""
    lines = lines_of(msg)
    return lines[0] if lines else None


def encode_cursor(stream_seq: int, index: int) -> str:
    return f"{stream_seq}.{index}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    """`<stream sequence>.<line index>` of the next line to read; ValueError if malformed."""
    seq, sep, index = cursor.partition(".")
    if not sep or not seq.isdigit() or not index.isdigit() or int(seq) < 1:
        raise ValueError(f"bad log cursor {cursor!r}")
    return int(seq), int(index)


async def last_sequence(js: JetStreamContext, stream: str, filter_subject: str) -> int:
    """The stream sequence of the last stored message on `filter_subject` (0 if none), now.

    One last-by-subject lookup per concrete subject (a job has one per attempt)."""
    try:
        info = await js.stream_info(stream, subjects_filter=filter_subject)
    except NotFoundError:
        return 0
    last = 0
    for subject in info.state.subjects or {}:
        with contextlib.suppress(NotFoundError):
            msg = await js.get_last_msg(stream, subject)
            last = max(last, msg.seq or 0)
    return last


async def _pending_from(js: JetStreamContext, stream: str, filter_subject: str, start: int) -> int:
    """How many messages on `filter_subject` are stored at or after stream sequence `start`."""
    config = api.ConsumerConfig(
        filter_subject=filter_subject, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start, ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0,
    )  # fmt: skip
    info = await js.add_consumer(stream, config=config)
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, info.name)
    return int(info.num_pending or 0)


async def _tail_start(js: JetStreamContext, stream: str, filter_subject: str, lines: int, last: int) -> int:
    """A stream sequence from which at least the last `lines` lines are stored (every message holds
    one line or more): gallop back from the end, so a tail costs about `lines` lines, not the log."""
    back = lines
    while back < last:
        start = last - back + 1
        if await _pending_from(js, stream, filter_subject, start) >= lines:
            return start
        back *= 4
    return 1


class LogPage(NamedTuple):
    items: list[dict[str, Any]]
    next_cursor: str | None


async def output_stream(js: JetStreamContext, domain: str, subject: str) -> tuple[str, int]:
    """The stream holding `subject`'s output: the domain's own, or the old shared one for output
    written before the streams were split per domain; and the subject's last sequence there."""
    own = logs_stream(domain)
    if last := await last_sequence(js, own, subject):
        return own, last
    if last := await last_sequence(js, LEGACY_LOGS_STREAM, subject):
        return LEGACY_LOGS_STREAM, last
    return own, 0


async def read_logs(
    js: JetStreamContext,
    domain: str,
    job_id: str,
    attempt: int | None,
    limit: int,
    cursor: str | None = None,
    tail: int | None = None,
) -> LogPage:
    """Stored lines of a job (or one attempt), in order: up to `limit` from `cursor` (or the start).

    Reads up to the last stored sequence of the job's log subjects as of the call; when it stops
    before that (page full, or the broker went quiet), `next_cursor` says where to resume.
    With `tail`, the last `tail` lines (read from a sequence found by galloping back from the end)."""
    subject = subjects.logs(domain, job_id, attempt) if attempt else subjects.logs_all(domain, job_id)
    stream, last = await output_stream(js, domain, subject)
    start, skip = decode_cursor(cursor) if cursor else (1, 0)
    if last == 0 or start > last:
        return LogPage([], None)
    if tail:
        start, skip = await _tail_start(js, stream, subject, tail, last), 0
    keep: deque[dict[str, Any]] | list[dict[str, Any]] = deque(maxlen=tail) if tail else []
    config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    next_cursor: str | None = None
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=SNAPSHOT_TIMEOUT_S)
            except TimeoutError:
                # Stored messages stopped coming: say where we are rather than end silently.
                next_cursor = encode_cursor(start, skip)
                break
            seq = msg.metadata.sequence.stream
            lines = lines_of(msg)
            first = skip if seq == start else 0
            for i in range(first, len(lines)):
                if not tail and len(keep) >= limit:
                    next_cursor = encode_cursor(seq, i)
                    break
                keep.append(lines[i])
            if next_cursor is not None:
                break
            start, skip = seq + 1, 0
            if seq >= last:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if tail and next_cursor is not None:
        # A tail that could not reach the end is no tail: refuse rather than return the wrong lines.
        raise TimeoutError("the log stopped coming before its last stored line")
    return LogPage(list(keep), next_cursor)


async def follow(
    js: JetStreamContext, stream: str, subject: str, start_seq: int | None = None
) -> AsyncIterator[Msg | None]:
    """Messages on `subject` from the start (or `start_seq`, or only new ones with -1), as they land.

    Yields None every poll interval without a message, so the caller can check on the job."""
    if start_seq is None:
        policy, opt = api.DeliverPolicy.ALL, None
    elif start_seq < 0:
        policy, opt = api.DeliverPolicy.NEW, None
    else:
        policy, opt = api.DeliverPolicy.BY_START_SEQUENCE, max(start_seq, 1)
    config = api.ConsumerConfig(deliver_policy=policy, opt_start_seq=opt)
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    try:
        while True:
            try:
                yield await sub.next_msg(timeout=FOLLOW_POLL_S)
            except TimeoutError:
                yield None
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def events_subject(domain: str) -> str:
    return subjects.domain_events(domain)
