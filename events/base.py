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

    `correlation_id` ties together everything one user action caused (a job and all its
    attempts share the job id); `causation_id` is the id of the event or request that
    directly caused this one.
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
