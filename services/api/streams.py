"""Reading the LOGS and EVENTS streams for the API: snapshots and live follows."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from events import subjects
from events.codec import DecodeError, decode_logline
from events.streams import LOGS_STREAM

SNAPSHOT_TIMEOUT_S = 5.0
FOLLOW_POLL_S = 0.5


def line_dict(msg: Msg) -> dict[str, Any] | None:
    try:
        line = decode_logline(msg.data)
    except DecodeError:
        return None
    attempt = int(msg.subject.rsplit(".", 1)[1])
    return {"attempt": attempt, "seq": line.seq, "stream": line.stream, "line": line.line, "at": line.at}


async def _count(js: JetStreamContext, stream: str, filter_subject: str) -> int:
    info = await js.stream_info(stream, subjects_filter=filter_subject)
    return sum((info.state.subjects or {}).values())


async def read_logs(
    js: JetStreamContext, domain: str, job_id: str, attempt: int | None, limit: int
) -> list[dict[str, Any]]:
    """Every stored line of a job (or one attempt), in order, up to `limit` from the start."""
    subject = subjects.logs(domain, job_id, attempt) if attempt else subjects.logs_all(domain, job_id)
    total = await _count(js, LOGS_STREAM, subject)
    if total == 0:
        return []
    out: list[dict[str, Any]] = []
    sub = await js.subscribe(
        subject, stream=LOGS_STREAM, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
    )
    try:
        while len(out) < min(total, limit):
            msg = await sub.next_msg(timeout=SNAPSHOT_TIMEOUT_S)
            line = line_dict(msg)
            if line is not None:
                out.append(line)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


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
