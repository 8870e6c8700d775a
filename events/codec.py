"""JSON encoding of events, and decoding chosen by the aggregate named in the subject."""

from __future__ import annotations

from typing import Any

import msgspec

from events.base import Event
from events.domain import AnyDomainEvent
from events.job import AnyJobEvent
from events.schedule import AnyScheduleEvent
from events.subjects import SubjectError, parse_event
from events.template import AnyTemplateEvent
from events.worker import AnyWorkerEvent, Heartbeat, LogLine

_encoder = msgspec.json.Encoder()
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "job": msgspec.json.Decoder(AnyJobEvent),
    "worker": msgspec.json.Decoder(AnyWorkerEvent),
    "schedule": msgspec.json.Decoder(AnyScheduleEvent),
    "domain": msgspec.json.Decoder(AnyDomainEvent),
    "template": msgspec.json.Decoder(AnyTemplateEvent),
}
_heartbeat = msgspec.json.Decoder(Heartbeat)
_logline = msgspec.json.Decoder(LogLine)


class DecodeError(ValueError):
    """A message on an event subject that is not a valid event; consumers log and skip it."""


def register_aggregate(name: str, union: Any) -> None:
    """Let later aggregates (schedule, domain, template) plug their unions in."""
    _decoders[name] = msgspec.json.Decoder(union)


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
        raise DecodeError(f"{subject}: {exc}") from exc
    if event.type != parsed.type or event.domain != parsed.domain:
        raise DecodeError(f"{subject}: payload says {event.domain}/{event.type}")
    return event


def decode_heartbeat(data: bytes) -> Heartbeat:
    try:
        return _heartbeat.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"heartbeat: {exc}") from exc


def decode_logline(data: bytes) -> LogLine:
    try:
        return _logline.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"log line: {exc}") from exc
