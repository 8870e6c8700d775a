"""The worker aggregate (registration and liveness transitions) and its heartbeat message."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, get_args

import msgspec
from msgspec import structs

from events.base import Conflict, Event, utcnow

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


# What an operator lets the dispatcher do with a worker (independent of its liveness `status`):
# `active` takes new jobs; `draining` and `disabled` take none, and the jobs they hold run on.
# `draining` is on its way out (finish what you have, e.g. before maintenance); `disabled` is
# out of service until enabled. A drained worker stays registered.
AdminState = Literal["active", "draining", "disabled"]
ADMIN_STATES: tuple[str, ...] = get_args(AdminState)


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
    # The state it starts in (`WORKER_STATE`); left out: the one an operator set before
    # stays (a restart does not put a disabled worker back to work), `active` at first.
    admin_state: AdminState | None = None


class WentOffline(WorkerEvent, frozen=True, kw_only=True, tag="offline"):
    reason: str
    last_heartbeat_at: datetime | None = None


class CameOnline(WorkerEvent, frozen=True, kw_only=True, tag="online"):
    pass


class Stopped(WorkerEvent, frozen=True, kw_only=True, tag="stopped"):
    reason: str = "shutdown"


class StateChanged(WorkerEvent, frozen=True, kw_only=True, tag="state_changed"):
    """An operator drained, disabled or enabled the worker (REST API, `jobstream workers …`)."""

    state: AdminState
    reason: str = ""


AnyWorkerEvent = Registered | WentOffline | CameOnline | Stopped | StateChanged


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
    admin_state: AdminState = "active"


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
            admin_state=event.admin_state or (state.admin_state if state is not None else "active"),
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
        case StateChanged(state=admin_state):
            return structs.replace(state, admin_state=admin_state, updated_at=event.at)
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


def decide_admin_state(
    state: WorkerState, target: AdminState, actor: str, cause: str | None = None, reason: str = ""
) -> StateChanged | None:
    """An operator's drain, disable or enable; None when the worker is in `target` already.

    Any liveness status may be changed (a stopped worker keeps the state when it registers
    again). Draining a disabled worker is refused: it takes no new jobs already, and draining
    would be a step back towards work; enable it first. `cause`: the worker's last event, the
    state the request found."""
    if target not in ADMIN_STATES:
        raise Conflict(f"worker state must be one of {', '.join(ADMIN_STATES)}, not {target!r}")
    if state.admin_state == target:
        return None
    if target == "draining" and state.admin_state == "disabled":
        raise Conflict(f"worker {state.id} is disabled, so it takes no new jobs already; enable it first")
    return StateChanged(
        domain=state.domain, actor=actor, worker_id=state.id, correlation_id=state.id, causation_id=cause,
        state=target, reason=reason,
    )  # fmt: skip


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
