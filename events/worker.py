"""The worker aggregate (registration and liveness transitions) and its heartbeat message."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec
from msgspec import structs

from events.base import Event, utcnow

# Liveness thresholds, one story (README, "Reliability"): a JetStream stream or KV leader
# election takes 4-10 s, during which appends and acknowledgements fail; nothing may count
# an election as a death.
HEARTBEAT_INTERVAL_S = 2.0
# A worker whose beats have not arrived for this long is offline and loses its jobs.
WORKER_TTL_S = 20.0
# A worker stops (fences) its jobs once its beats cannot reach anyone: no connection for
# this long (longer than a server restart under `up`) ...
FENCE_DISCONNECTED_S = 8.0
# ... or no beat acknowledged for this long (longer than the worst election). Both, plus a
# beat's interval and timeout (when the rule is checked) and the kill of the jobs, stay
# below WORKER_TTL_S: a worker has stopped its jobs before the dispatcher gives them away.
FENCE_UNACKED_S = 12.0


class WorkerStatus(StrEnum):
    ACTIVE = "active"
    OFFLINE = "offline"
    STOPPED = "stopped"


class HostFacts(msgspec.Struct, frozen=True, omit_defaults=True):
    hostname: str = ""
    pid: int = 0
    os: str = ""
    python: str = ""
    cpus: int = 0


class WorkerEvent(Event, frozen=True, kw_only=True):
    worker_id: str


class Registered(WorkerEvent, frozen=True, kw_only=True, tag="registered"):
    tags: list[str] = []
    allowed_users: list[str] = []
    max_concurrency: int = 1
    executors: list[str] = []
    host: HostFacts = HostFacts()
    version: str = ""
    # A fresh id per process start: a worker id is not an identity across processes, and
    # whatever an earlier run of the id held is gone with it.
    incarnation: str = ""


class WentOffline(WorkerEvent, frozen=True, kw_only=True, tag="offline"):
    reason: str
    last_heartbeat_at: datetime | None = None


class CameOnline(WorkerEvent, frozen=True, kw_only=True, tag="online"):
    pass


class Stopped(WorkerEvent, frozen=True, kw_only=True, tag="stopped"):
    reason: str = "shutdown"


AnyWorkerEvent = Registered | WentOffline | CameOnline | Stopped


class WorkerState(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    domain: str
    status: WorkerStatus
    tags: tuple[str, ...]
    allowed_users: tuple[str, ...]
    max_concurrency: int
    executors: tuple[str, ...]
    host: HostFacts
    registered_at: datetime
    updated_at: datetime
    version: str = ""
    reason: str | None = None
    incarnation: str = ""


def evolve_worker(state: WorkerState | None, event: AnyWorkerEvent) -> WorkerState | None:
    """Fold one worker event; a re-registration replaces capabilities and reactivates."""
    if isinstance(event, Registered):
        return WorkerState(
            id=event.worker_id,
            domain=event.domain,
            status=WorkerStatus.ACTIVE,
            tags=tuple(event.tags),
            allowed_users=tuple(event.allowed_users),
            max_concurrency=event.max_concurrency,
            executors=tuple(event.executors),
            host=event.host,
            registered_at=event.at,
            updated_at=event.at,
            version=event.version,
            incarnation=event.incarnation,
        )
    if state is None:
        return None
    match event:
        case WentOffline(reason=reason):
            return structs.replace(state, status=WorkerStatus.OFFLINE, reason=reason, updated_at=event.at)
        case CameOnline():
            return structs.replace(state, status=WorkerStatus.ACTIVE, reason=None, updated_at=event.at)
        case Stopped(reason=reason):
            return structs.replace(state, status=WorkerStatus.STOPPED, reason=reason, updated_at=event.at)
    return state


def decide_offline(
    state: WorkerState, reason: str, actor: str = "dispatcher", cause: str | None = None
) -> WentOffline | None:
    """Only an active worker goes offline (its jobs then go back); once is enough. `cause`: the
    worker's last event, the state the missing beats were judged against."""
    if state.status is not WorkerStatus.ACTIVE:
        return None
    return WentOffline(
        domain=state.domain, actor=actor, worker_id=state.id, correlation_id=state.id, causation_id=cause,
        reason=reason,
    )  # fmt: skip


def decide_online(
    state: WorkerState, actor: str = "dispatcher", cause: str | None = None
) -> CameOnline | None:
    """An offline worker whose beats arrive again is active again; a stopped one must register.
    `cause`: the worker's last event (its `offline`)."""
    if state.status is not WorkerStatus.OFFLINE:
        return None
    return CameOnline(
        domain=state.domain, actor=actor, worker_id=state.id, correlation_id=state.id, causation_id=cause
    )


class Heartbeat(msgspec.Struct, frozen=True, omit_defaults=True):
    """Liveness, on its own short-retention stream; not part of the history."""

    worker_id: str
    domain: str
    seq: int
    running: list[str] = []
    max_concurrency: int = 1
    draining: bool = False
    at: datetime = msgspec.field(default_factory=utcnow)


LOG_STREAMS = ("stdout", "stderr", "jobstream")  # "jobstream": the worker's own notes (lines dropped …)


class LogLine(msgspec.Struct, frozen=True, array_like=False, omit_defaults=True):
    """One line of job output; `seq` orders lines of one attempt across both streams.

    Version 1 of the output message: one line each. Still written by nothing, decoded forever."""

    seq: int
    stream: str  # one of LOG_STREAMS
    line: str
    at: datetime = msgspec.field(default_factory=utcnow)


class LogBatch(msgspec.Struct, frozen=True, omit_defaults=True, tag="batch", tag_field="kind"):
    """Version 2 of the output message: consecutive lines of one attempt in one message.

    One message per line cost a publish, an ack and a stored message per line, and a chatty
    job could bury the worker's connection; a batch carries up to a few hundred lines.
    `seq` of each line stays the attempt-wide line number, so readers can page by it."""

    lines: list[LogLine]
