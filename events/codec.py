"""JSON encoding of events, and decoding chosen by the aggregate named in the subject."""

from __future__ import annotations

from typing import Any

import msgspec

from events.base import SCHEMA_VERSION, Event
from events.domain import AnyDomainEvent
from events.ids import is_token
from events.job import AnyJobEvent
from events.schedule import AnyScheduleEvent
from events.subjects import EVENTS_PREFIX, heartbeat
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


# Worker ids already found safe (`is_token`): a log names few workers, and the regex ran for
# three events in four. Cleared when full, so it stays small whatever the log holds.
_safe_workers: set[str] = set()
_SAFE_WORKERS_MAX = 4096


def decode_event(subject: str, data: bytes) -> Event:
    """The event on `subject`, checked against it (its type, domain, aggregate id and worker).

    Runs for every event a replay folds, so the subject is split here with the same rules as
    `parse_event` (no object built) and the tag is read from the class, not the property."""
    parts = subject.split(".")
    n = len(parts)
    if n < 5 or n > 6 or parts[0] != EVENTS_PREFIX:
        raise DecodeError(f"not an event subject: {subject!r}")
    aggregate = parts[2]
    decoder = _decoders.get(aggregate)
    if decoder is None:
        raise DecodeError(f"unknown aggregate {aggregate!r} in {subject}")
    try:
        event: Event = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        event = _decode_older(aggregate, subject, data, decoder, exc)
    else:
        if not is_current(aggregate, event.__struct_config__.tag, event.v):  # type: ignore[arg-type]
            event = _decode_older(aggregate, subject, data, decoder, None)
    if event.__struct_config__.tag != parts[4] or event.domain != parts[1]:
        raise DecodeError(f"{subject}: payload says {event.domain}/{event.type}")
    id_field = _id_fields.get(aggregate)
    said = getattr(event, id_field, parts[3]) if id_field else parts[3]
    if said != parts[3]:
        raise DecodeError(f"{subject}: payload is about {aggregate} {said!r}")
    worker_id = getattr(event, "worker_id", None)
    if n == 6 and worker_id != parts[5]:
        raise DecodeError(f"{subject}: payload names another worker")
    if worker_id is not None and worker_id not in _safe_workers:
        if not is_token(worker_id):
            # Worker ids become consumer names and broker permissions: only the safe alphabet.
            raise DecodeError(
                f"{subject}: worker id {worker_id!r} may only hold letters, digits, '_' and '-'"
            )
        if len(_safe_workers) >= _SAFE_WORKERS_MAX:
            _safe_workers.clear()
        _safe_workers.add(worker_id)
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
