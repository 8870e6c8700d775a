"""Fields every event carries, and the time source they use."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from events.ids import new_id

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Envelope shared by all aggregates; subclasses add a tag and their payload.

    `correlation_id` is set on every append: the aggregate's root (the job id for all of a
    job's events, else the schedule, worker, template or domain id).

    `causation_id` names an earlier event, the one this one answers, else the aggregate's
    last event: the state the decision was made on. So a dispatch names the `submitted`,
    `held` or `requeued` it placed, a `started` its `dispatched`, an outcome its `started`; a
    scheduled job's `submitted` the tick's `fired` (the one forward link: the job is appended
    first); a tick's records (`fired`, `skipped`, `queued`, `missed`) the schedule's event
    before them, each later record of one pass the one before it; a worker's `offline` and
    `online` (the dispatcher's, from heartbeats) and its `stopped` or re-registration the
    worker's last event; a change made through the API (a cancel, a schedule's pause, a
    token, a template's new version) the aggregate's last event as the request found it.
    None only on an aggregate's first event made by a request or a process start: a job
    submitted through the API (also a retry's or a run-now's job), a schedule, domain or
    template's first version created, a worker's first `registered`; their cause is the
    request, whose span is in the trace. The audit's `event.causation` check holds it.
    """

    domain: str
    actor: str
    id: str = msgspec.field(default_factory=new_id)
    v: int = SCHEMA_VERSION
    at: datetime = msgspec.field(default_factory=utcnow)
    correlation_id: str | None = None
    causation_id: str | None = None

    @property
    def type(self) -> str:
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


class DomainError(Exception):
    """A command refused by an aggregate's rules; the message says why, for people."""

    code = "refused"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"
