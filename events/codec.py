"""JSON encoding of events, and decoding chosen by the aggregate named in the subject."""

from __future__ import annotations

from typing import Any

import msgspec

from events.base import SCHEMA_VERSION, Event
from events.domain import AnyDomainEvent
from events.ids import is_token
from events.job import AnyJobEvent
from events.schedule import AnyScheduleEvent
from events.subjects import SubjectError, heartbeat, parse_event
from events.template import AnyTemplateEvent
from events.upcast import UpcastError, is_current, upcast
from events.worker import AnyWorkerEvent, Heartbeat, LogBatch, LogLine

_encoder = msgspec.json.Encoder()
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "job": msgspec.json.Decoder(AnyJobEvent),
    "worker": msgspec.json.Decoder(AnyWorkerEvent),
    "schedule": msgspec.json.Decoder(AnyScheduleEvent),
    "domain": msgspec.json.Decoder(AnyDomainEvent),
    "template": msgspec.json.Decoder(AnyTemplateEvent),
}
# The payload field that must repeat the subject's aggregate id: a publisher allowed one
# subject cannot smuggle an event about another aggregate through it.
_id_fields = {"job": "job_id", "worker": "worker_id", "schedule": "schedule_id", "domain": "domain",
              "template": "template"}  # fmt: skip
_heartbeat = msgspec.json.Decoder(Heartbeat)
_logline = msgspec.json.Decoder(LogLine)
_logbatch = msgspec.json.Decoder(LogBatch)


class DecodeError(ValueError):
    """A message on an event subject that is not a valid event; consumers log and skip it."""


def register_aggregate(name: str, union: Any) -> None:
    """Let later aggregates (schedule, domain, template) plug their unions in."""
    _decoders[name] = msgspec.json.Decoder(union)


def aggregates() -> frozenset[str]:
    """The aggregate names an event subject may carry."""
    return frozenset(_decoders)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def decode_event(subject: str, data: bytes) -> Event:
    try:
        parsed = parse_event(subject)
    except SubjectError as exc:
        raise DecodeError(str(exc)) from exc
    decoder = _decoders.get(parsed.aggregate)
    if decoder is None:
        raise DecodeError(f"unknown aggregate {parsed.aggregate!r} in {subject}")
    try:
        event: Event = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        event = _decode_older(parsed.aggregate, subject, data, decoder, exc)
    else:
        if not is_current(parsed.aggregate, event.type, event.v):
            event = _decode_older(parsed.aggregate, subject, data, decoder, None)
    if event.type != parsed.type or event.domain != parsed.domain:
        raise DecodeError(f"{subject}: payload says {event.domain}/{event.type}")
    said = getattr(event, _id_fields.get(parsed.aggregate, ""), parsed.aggregate_id)
    if said != parsed.aggregate_id:
        raise DecodeError(f"{subject}: payload is about {parsed.aggregate} {said!r}")
    worker_id = getattr(event, "worker_id", None)
    if parsed.worker_id is not None and worker_id != parsed.worker_id:
        raise DecodeError(f"{subject}: payload names another worker")
    if worker_id is not None and not is_token(worker_id):
        # Worker ids become consumer names and broker permissions: only the safe alphabet.
        raise DecodeError(f"{subject}: worker id {worker_id!r} may only hold letters, digits, '_' and '-'")
    return event


def _decode_older(
    aggregate: str, subject: str, data: bytes, decoder: msgspec.json.Decoder[Any], exc: Exception | None
) -> Event:
    """A payload of another version than its type's current one: upcast, then decoded again
    (see events/upcast.py). A current payload that failed to decode keeps its own error."""
    try:
        payload = msgspec.json.decode(data)
    except msgspec.DecodeError as bad:
        raise DecodeError(f"{subject}: {exc or bad}") from bad
    if not isinstance(payload, dict):
        raise DecodeError(f"{subject}: payload is not a JSON object")
    if exc is not None and is_current(aggregate, str(payload.get("type")), payload.get("v", SCHEMA_VERSION)):
        raise DecodeError(f"{subject}: {exc}") from exc
    try:
        event: Event = decoder.decode(_encoder.encode(upcast(aggregate, payload)))
    except UpcastError as err:
        raise DecodeError(f"{subject}: {err}") from err
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise DecodeError(f"{subject}: after upcasting: {err}") from err
    return event


def decode_heartbeat(subject: str, data: bytes) -> Heartbeat:
    """A beat counts only for the worker its subject names (`hb.<domain>.<worker>`)."""
    try:
        beat = _heartbeat.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"heartbeat: {exc}") from exc
    if subject != heartbeat(beat.domain, beat.worker_id):
        raise DecodeError(f"{subject}: heartbeat payload is for {beat.domain}/{beat.worker_id}")
    return beat


def decode_logline(data: bytes) -> LogLine:
    try:
        return _logline.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"log line: {exc}") from exc


def decode_log(data: bytes) -> list[LogLine]:
    """The lines of one output message, whichever version wrote it (a batch, or one line)."""
    if data.startswith(b'{"kind":'):  # msgspec writes the tag first
        try:
            return _logbatch.decode(data).lines
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"log batch: {exc}") from exc
    return [decode_logline(data)]
