"""The ingress: how what a domain token publishes reaches the streams.

A token's worker publishes its reports, heartbeats and output lines on their usual
subjects; the TENANTS account maps them to `in.<subject>` here, and this re-publishes each
to JetStream after checking it, with only the headers a worker needs. Straight through,
a token would choose every JetStream header on a stream all domains share: a
`Nats-Msg-Id` that pre-empts another domain's idempotency key or schedule tick, or
`Nats-Expected-Last-Msg-Id` / `…-Subject-Sequence-Subject` probes whose refusals read out
another domain's keys and sequences (found in review, checked on nats-server 2.15.1).
"""

from __future__ import annotations

import json
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events.codec import DecodeError, decode_event, decode_heartbeat, decode_log
from events.ids import is_token
from events.store import EXPECTED_LAST_SUBJECT_SEQ, EXPECTED_LAST_SUBJECT_SEQ_SUBJECT
from events.subjects import (
    EVENTS_PREFIX,
    HEARTBEATS_PREFIX,
    INGRESS_PREFIX,
    LOGS_PREFIX,
    SubjectError,
    aggregate_all,
    parse_event,
)
from events.worker import LOG_STREAMS
from services.broker.bounds import PerDomain
from services.runtime.broker_auth import WORKER_EVENTS, WORKER_JOB_EVENTS

log = logging.getLogger(__name__)
WORKER_EVENT_TYPES = {"job": WORKER_JOB_EVENTS, "worker": WORKER_EVENTS}
IN_FLIGHT_PER_DOMAIN = 1024
# Output gets its own bound: a chatty domain's log batches must not use up the room its
# heartbeats and reports need.
OUTPUT_IN_FLIGHT_PER_DOMAIN = 256
MAX_LINES_PER_MESSAGE = 10_000
QUEUE = "jobstream-ingress"
PUBLISH_TIMEOUT_S = 10.0
TRACE_HEADERS = ("traceparent", "tracestate")


class Refused(ValueError):
    pass


def checked(subject: str, data: bytes, headers: dict[str, str] | None) -> dict[str, str]:
    """The headers to publish with, or Refused. Pure, so every rule is testable on its own."""
    given = headers or {}
    kept = {k: v for k, v in given.items() if k in TRACE_HEADERS}
    kind, *rest = subject.split(".")
    # A literal `*` or `>` passes broker permissions as a token; here it would become an id
    # that fences or reads every aggregate at once.
    if not rest or not all(is_token(part) for part in rest):
        raise Refused(f"{subject} holds a token outside [A-Za-z0-9_-]")
    try:
        if kind == EVENTS_PREFIX:
            decode_event(subject, data)
            parsed = parse_event(subject)
            if parsed.type not in WORKER_EVENT_TYPES.get(parsed.aggregate, ()):
                raise Refused(f"a domain token may not append {parsed.aggregate} {parsed.type} events")
            scope = aggregate_all(parsed.domain, parsed.aggregate, parsed.aggregate_id)
            if EXPECTED_LAST_SUBJECT_SEQ in given:
                if given.get(EXPECTED_LAST_SUBJECT_SEQ_SUBJECT, scope) != scope:
                    raise Refused(f"an append to {subject} may only be fenced on {scope}")
                kept[EXPECTED_LAST_SUBJECT_SEQ] = given[EXPECTED_LAST_SUBJECT_SEQ]
                kept[EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = scope
            if parsed.aggregate == "job" and not given.get(EXPECTED_LAST_SUBJECT_SEQ, "0").strip("0"):
                # A worker reports only on a job dispatched to it: always fenced on an event that
                # exists. Unfenced, a token could write a history for a job that never was.
                raise Refused(f"a report on {scope} must be fenced on the job's last event")
        elif kind == HEARTBEATS_PREFIX:
            decode_heartbeat(subject, data)
        elif kind == LOGS_PREFIX:
            parts = subject.split(".")
            if len(parts) != 4 or not parts[3].isdigit():
                raise Refused(f"not an output subject (log.<domain>.<job>.<attempt>): {subject}")
            lines = decode_log(data)  # a batch (v2) or one line (v1)
            if len(lines) > MAX_LINES_PER_MESSAGE:
                raise Refused(f"an output message may hold at most {MAX_LINES_PER_MESSAGE} lines")
            if any(line.stream not in LOG_STREAMS for line in lines):
                raise Refused(f"output lines must be on one of {', '.join(LOG_STREAMS)}")
        else:
            raise Refused(f"nothing may be published on {subject} through the ingress")
    except (DecodeError, SubjectError) as exc:
        raise Refused(str(exc)) from exc
    return kept


def _error(code: int, description: str) -> bytes:
    """Shaped like JetStream's own refusals, so a worker's publisher reads both alike."""
    return json.dumps({"error": {"code": code, "err_code": 0, "description": description}}).encode()


async def serve_ingress(nc: NATS) -> Subscription:
    """Publishes are pipelined; a domain may have IN_FLIGHT_PER_DOMAIN of them unanswered, so
    one domain's flood is refused ("retry") before it can starve the others."""
    in_flight = PerDomain(IN_FLIGHT_PER_DOMAIN)
    output_in_flight = PerDomain(OUTPUT_IN_FLIGHT_PER_DOMAIN)

    async def forward(msg: Msg, subject: str, headers: dict[str, str]) -> None:
        try:
            answer = await nc.request(subject, msg.data, timeout=PUBLISH_TIMEOUT_S, headers=headers or None)
        except Exception as exc:  # no stream, timeout: the worker retries as it would anyway
            log.warning("ingress publish to %s failed: %s", subject, exc)
            await msg.respond(_error(503, f"not stored: {type(exc).__name__}"))
            return
        await msg.respond(answer.data)

    async def on_msg(msg: Msg) -> None:
        subject = msg.subject.removeprefix(f"{INGRESS_PREFIX}.")
        try:
            headers = checked(subject, msg.data, msg.headers)
        except Refused as exc:
            log.info("ingress refused %s: %s", subject, exc)
            if msg.reply:
                await msg.respond(_error(400, f"refused: {exc}"))
            return
        if not msg.reply:
            await nc.publish(subject, msg.data, headers=headers or None)
            return
        domain = subject.split(".")[1]
        bound = output_in_flight if subject.startswith(f"{LOGS_PREFIX}.") else in_flight
        if not bound.start(domain, lambda: forward(msg, subject, headers)):
            await msg.respond(_error(429, f"too many publishes in flight for domain {domain}; retry"))

    return await nc.subscribe(f"{INGRESS_PREFIX}.>", queue=QUEUE, cb=on_msg)
