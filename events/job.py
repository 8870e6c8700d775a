"""The job aggregate: its spec, its events, and the pure rules that give them meaning.

`evolve(state, event)` folds one event into a job's state and never fails;
the `decide_*` functions turn a command and the current state into the event to
append, or raise a DomainError saying why the command is not allowed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import msgspec
from msgspec import structs

from events.base import Conflict, Event, utcnow

# Worker loss is not the job's fault, so it does not use up `max_retries`; this bound
# stops a job that kills its worker every time from bouncing around the fleet forever.
MAX_REQUEUES = 5
DEFAULT_RETRY_BACKOFF_S = 1.0
MAX_RETRY_BACKOFF_S = 3600.0


class JobStatus(StrEnum):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED})
ACTIVE = frozenset({JobStatus.DISPATCHED, JobStatus.RUNNING})


# ---- spec -------------------------------------------------------------------------


class ShellExecutor(msgspec.Struct, frozen=True, tag="shell", tag_field="type"):
    script: str
    shell: Literal["sh", "bash"] = "sh"


class PythonExecutor(msgspec.Struct, frozen=True, tag="python", tag_field="type"):
    """Exactly one of script, module or callable ("pkg.mod:func", run in-process)."""

    script: str | None = None
    module: str | None = None
    callable: str | None = None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}


Executor = ShellExecutor | PythonExecutor
EXECUTOR_TYPES = ("shell", "python")


class Completion(msgspec.Struct, frozen=True, omit_defaults=True):
    """What counts as success besides the process ending."""

    exit_codes: list[int] = msgspec.field(default_factory=lambda: [0])
    stdout_match: str | None = None
    stdout_not_match: str | None = None


class JobSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    executor: Executor
    tags: list[str] = []
    user: str | None = None
    priority: int = 0
    env: dict[str, str] = {}
    cwd: str | None = None
    timeout_s: float | None = None
    max_retries: int = 0
    retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S
    completion: Completion | None = None
    labels: dict[str, str] = {}
    # Concurrency limits, counted per domain over dispatched + running jobs (see
    # services/dispatcher/limits.py). A key without a limit means a limit of 1.
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    # At most this many jobs with this job's `name` at once (the seeds' max_per_job).
    name_limit: int | None = None


# ---- events -----------------------------------------------------------------------


class JobEvent(Event, frozen=True, kw_only=True):
    job_id: str


class Submitted(JobEvent, frozen=True, kw_only=True, tag="submitted"):
    spec: JobSpec
    idempotency_key: str | None = None
    retry_of: str | None = None
    # Set when a schedule fired the job: which schedule, and the tick (scheduled time) it is for.
    schedule_id: str | None = None
    tick: datetime | None = None
    # Set when the spec came from a template: its name and version ("name@3").
    template: str | None = None


class Held(JobEvent, frozen=True, kw_only=True, tag="held"):
    """The dispatcher found no live worker that could ever take the job."""

    reason: str


class Dispatched(JobEvent, frozen=True, kw_only=True, tag="dispatched"):
    worker_id: str
    attempt: int
    # The spec and counters travel with the assignment, so a worker needs no read of the
    # log to start the job or to decide what its outcome means.
    spec: JobSpec
    retries: int = 0
    requeues: int = 0


class Started(JobEvent, frozen=True, kw_only=True, tag="started"):
    worker_id: str
    attempt: int
    pid: int | None = None
    # Which run of the worker process started it: a worker id outlives its processes.
    incarnation: str = ""


class Succeeded(JobEvent, frozen=True, kw_only=True, tag="succeeded"):
    worker_id: str
    attempt: int
    exit_code: int | None = 0
    duration_s: float = 0.0
    result: Any = None


class Failed(JobEvent, frozen=True, kw_only=True, tag="failed"):
    worker_id: str | None = None
    attempt: int = 0
    exit_code: int | None = None
    error: str = ""
    duration_s: float = 0.0


class TimedOut(JobEvent, frozen=True, kw_only=True, tag="timed_out"):
    worker_id: str
    attempt: int
    duration_s: float = 0.0
    error: str = ""


class Cancelled(JobEvent, frozen=True, kw_only=True, tag="cancelled"):
    worker_id: str | None = None
    attempt: int = 0
    reason: str = ""


class RetryScheduled(JobEvent, frozen=True, kw_only=True, tag="retry_scheduled"):
    """An attempt failed and the job will run again, not before `not_before`."""

    worker_id: str
    attempt: int
    outcome: Literal["failed", "timed_out"]
    exit_code: int | None = None
    error: str = ""
    duration_s: float = 0.0
    not_before: datetime


class Requeued(JobEvent, frozen=True, kw_only=True, tag="requeued"):
    """The attempt was taken back from its worker (lost, shut down) and will run elsewhere."""

    worker_id: str
    attempt: int
    reason: str


class CancelRequested(JobEvent, frozen=True, kw_only=True, tag="cancel_requested"):
    reason: str = ""


AnyJobEvent = (
    Submitted
    | Held
    | Dispatched
    | Started
    | Succeeded
    | Failed
    | TimedOut
    | Cancelled
    | RetryScheduled
    | Requeued
    | CancelRequested
)
TERMINAL_EVENTS = (Succeeded, Failed, TimedOut, Cancelled)


# ---- state ------------------------------------------------------------------------


class Attempt(msgspec.Struct, frozen=True, omit_defaults=True):
    n: int
    worker_id: str
    dispatched_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # running | succeeded | failed | timed_out | cancelled | lost
    status: str = "dispatched"
    exit_code: int | None = None
    error: str | None = None


class JobState(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    domain: str
    spec: JobSpec
    status: JobStatus
    submitted_at: datetime
    updated_at: datetime
    attempt: int = 0
    worker_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    retries: int = 0
    requeues: int = 0
    not_before: datetime | None = None
    pending_reason: str | None = None
    cancel_requested: bool = False
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    result: Any = None
    idempotency_key: str | None = None
    retry_of: str | None = None
    incarnation: str = ""  # of the worker process running the current attempt
    submitted_by: str | None = None
    schedule_id: str | None = None
    tick: datetime | None = None
    template: str | None = None
    # The id of the last event folded in: the cause of the next decision on the job.
    last_event_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _close_attempt(
    state: JobState,
    attempt: int,
    at: datetime,
    status: str,
    exit_code: int | None,
    error: str | None,
) -> tuple[Attempt, ...]:
    if not state.attempts or state.attempts[-1].n != attempt:
        return state.attempts
    last = structs.replace(
        state.attempts[-1], finished_at=at, status=status, exit_code=exit_code, error=error or None
    )
    return (*state.attempts[:-1], last)


def evolve(state: JobState | None, event: AnyJobEvent) -> JobState | None:
    """Fold one event into a job's state. Never raises; events after a terminal one are ignored.
    The state remembers the last event it took in, which the next decision names as its cause."""
    after = _evolve(state, event)
    if after is None or after is state:
        return after
    return structs.replace(after, last_event_id=event.id)


def _evolve(state: JobState | None, event: AnyJobEvent) -> JobState | None:
    if state is None:
        if isinstance(event, Submitted):
            return JobState(
                id=event.job_id,
                domain=event.domain,
                spec=event.spec,
                status=JobStatus.PENDING,
                submitted_at=event.at,
                updated_at=event.at,
                idempotency_key=event.idempotency_key,
                retry_of=event.retry_of,
                submitted_by=event.actor,
                schedule_id=event.schedule_id,
                tick=event.tick,
                template=event.template,
            )
        return None
    if state.terminal or isinstance(event, Submitted):
        return state
    at = event.at
    match event:
        case Held(reason=reason):
            return structs.replace(state, pending_reason=reason, updated_at=at)
        case Dispatched(worker_id=worker_id, attempt=attempt):
            return structs.replace(
                state,
                status=JobStatus.DISPATCHED,
                attempt=attempt,
                worker_id=worker_id,
                attempts=(*state.attempts, Attempt(attempt, worker_id, at)),
                pending_reason=None,
                not_before=None,
                dispatched_at=at,
                updated_at=at,
            )
        case Started(attempt=attempt, incarnation=incarnation):
            attempts = state.attempts
            if attempts and attempts[-1].n == attempt:
                attempts = (
                    *attempts[:-1],
                    structs.replace(attempts[-1], started_at=at, status="running"),
                )
            return structs.replace(
                state,
                status=JobStatus.RUNNING,
                attempts=attempts,
                started_at=at,
                updated_at=at,
                incarnation=incarnation,
            )
        case Succeeded(attempt=attempt, exit_code=code, result=result):
            return structs.replace(
                state,
                status=JobStatus.SUCCEEDED,
                attempts=_close_attempt(state, attempt, at, "succeeded", code, None),
                exit_code=code,
                result=result,
                error=None,
                finished_at=at,
                updated_at=at,
            )
        case Failed(attempt=attempt, exit_code=code, error=error):
            return structs.replace(
                state,
                status=JobStatus.FAILED,
                attempts=_close_attempt(state, attempt, at, "failed", code, error),
                exit_code=code,
                error=error,
                finished_at=at,
                updated_at=at,
            )
        case TimedOut(attempt=attempt, error=error):
            return structs.replace(
                state,
                status=JobStatus.TIMED_OUT,
                attempts=_close_attempt(state, attempt, at, "timed_out", None, error),
                error=error,
                finished_at=at,
                updated_at=at,
            )
        case Cancelled(attempt=attempt, reason=reason):
            return structs.replace(
                state,
                status=JobStatus.CANCELLED,
                attempts=_close_attempt(state, attempt, at, "cancelled", None, reason),
                error=reason or None,
                finished_at=at,
                updated_at=at,
            )
        case RetryScheduled(attempt=attempt, outcome=outcome, exit_code=code, error=error):
            return structs.replace(
                state,
                status=JobStatus.PENDING,
                attempts=_close_attempt(state, attempt, at, outcome, code, error),
                worker_id=None,
                retries=state.retries + 1,
                not_before=event.not_before,
                exit_code=code,
                error=error,
                updated_at=at,
            )
        case Requeued(attempt=attempt, reason=reason):
            return structs.replace(
                state,
                status=JobStatus.PENDING,
                attempts=_close_attempt(state, attempt, at, "lost", None, reason),
                worker_id=None,
                requeues=state.requeues + 1,
                updated_at=at,
            )
        case CancelRequested():
            return structs.replace(state, cancel_requested=True, updated_at=at)
    return state


def fold(events: list[AnyJobEvent]) -> JobState | None:
    state: JobState | None = None
    for event in events:
        state = evolve(state, event)
    return state


# ---- decisions --------------------------------------------------------------------


class AlreadyTerminal(Conflict):
    pass


class StaleAssignment(Conflict):
    """The assignment a worker holds is no longer the job's current one."""


def _meta(state: JobState, actor: str, causation_id: str | None) -> dict[str, Any]:
    return {
        "domain": state.domain,
        "job_id": state.id,
        "actor": actor,
        "correlation_id": state.id,
        "causation_id": causation_id or state.last_event_id,
    }


def decide_dispatch(state: JobState, worker_id: str, actor: str = "dispatcher") -> Dispatched:
    if state.status is not JobStatus.PENDING:
        raise Conflict(f"job {state.id} is {state.status}, not pending")
    return Dispatched(
        **_meta(state, actor, None),
        worker_id=worker_id,
        attempt=state.attempt + 1,
        spec=state.spec,
        retries=state.retries,
        requeues=state.requeues,
    )


def state_from_dispatch(event: Dispatched, started_at: datetime | None = None) -> JobState:
    """The state a worker can know from its assignment alone: enough to decide an outcome."""
    status = JobStatus.RUNNING if started_at else JobStatus.DISPATCHED
    return JobState(
        id=event.job_id,
        domain=event.domain,
        spec=event.spec,
        status=status,
        submitted_at=event.at,
        updated_at=started_at or event.at,
        attempt=event.attempt,
        worker_id=event.worker_id,
        attempts=(Attempt(event.attempt, event.worker_id, event.at, started_at=started_at),),
        retries=event.retries,
        requeues=event.requeues,
        last_event_id=event.id,
    )


def decide_start(
    state: JobState, worker_id: str, attempt: int, pid: int | None = None, incarnation: str = ""
) -> Started | Cancelled:
    """A worker may start only the exact assignment it holds; a cancel that raced it wins."""
    _check_assignment(state, worker_id, attempt, {JobStatus.DISPATCHED})
    meta = _meta(state, f"worker:{worker_id}", None)
    if state.cancel_requested:
        return Cancelled(**meta, worker_id=worker_id, attempt=attempt, reason="cancelled before start")
    return Started(**meta, worker_id=worker_id, attempt=attempt, pid=pid, incarnation=incarnation)


def started_by(state: JobState, worker_id: str, attempt: int, incarnation: str) -> bool:
    """This very worker process started this attempt: a `started` whose append seemed to fail
    (a timeout) but landed. Its start counts; starting again would be refused as stale."""
    return (
        bool(incarnation)
        and state.status is JobStatus.RUNNING
        and (state.worker_id, state.attempt, state.incarnation) == (worker_id, attempt, incarnation)
    )


def held_by_gone_run(state: JobState, worker_id: str, attempt: int, incarnation: str) -> bool:
    """This worker id's attempt was started by an earlier run of its process. That run is gone
    (a worker id runs in one process at a time), so the attempt must be handed back."""
    return (
        state.status is JobStatus.RUNNING
        and (state.worker_id, state.attempt) == (worker_id, attempt)
        and state.incarnation != incarnation
    )


def _check_assignment(state: JobState, worker_id: str, attempt: int, statuses: set[JobStatus]) -> None:
    if state.terminal:
        raise AlreadyTerminal(f"job {state.id} is already {state.status}")
    if state.status not in statuses or state.worker_id != worker_id or state.attempt != attempt:
        raise StaleAssignment(
            f"job {state.id} attempt {attempt} on {worker_id} is stale "
            f"(job is {state.status}, attempt {state.attempt} on {state.worker_id})"
        )


class Outcome(msgspec.Struct, frozen=True):
    """What a worker observed when an attempt ended."""

    status: Literal["succeeded", "failed", "timed_out", "cancelled"]
    exit_code: int | None = None
    error: str = ""
    duration_s: float = 0.0
    result: Any = None


def retry_delay_s(spec: JobSpec, retries_done: int) -> float:
    """Exponential backoff: base * 2^n, capped so a typo cannot park a job for years."""
    return float(min(spec.retry_backoff_s * (2**retries_done), MAX_RETRY_BACKOFF_S))


def decide_outcome(
    state: JobState, worker_id: str, attempt: int, outcome: Outcome, now: datetime | None = None
) -> JobEvent:
    _check_assignment(state, worker_id, attempt, {JobStatus.RUNNING})
    meta = _meta(state, f"worker:{worker_id}", None)
    if outcome.status == "succeeded":
        return Succeeded(
            **meta,
            worker_id=worker_id,
            attempt=attempt,
            exit_code=outcome.exit_code,
            duration_s=outcome.duration_s,
            result=outcome.result,
        )
    if outcome.status == "cancelled" or state.cancel_requested:
        return Cancelled(**meta, worker_id=worker_id, attempt=attempt, reason=outcome.error or "cancelled")
    if state.retries < state.spec.max_retries:
        now = now or utcnow()
        delay = retry_delay_s(state.spec, state.retries)
        return RetryScheduled(
            **meta,
            worker_id=worker_id,
            attempt=attempt,
            outcome=outcome.status,
            exit_code=outcome.exit_code,
            error=outcome.error,
            duration_s=outcome.duration_s,
            not_before=now + timedelta(seconds=delay),
        )
    if outcome.status == "timed_out":
        return TimedOut(
            **meta, worker_id=worker_id, attempt=attempt, duration_s=outcome.duration_s, error=outcome.error
        )
    return Failed(
        **meta,
        worker_id=worker_id,
        attempt=attempt,
        exit_code=outcome.exit_code,
        error=outcome.error,
        duration_s=outcome.duration_s,
    )


def decide_cancel(state: JobState, actor: str, reason: str = "") -> Cancelled | CancelRequested:
    """Pending jobs end at once; dispatched or running ones are asked to stop by their worker."""
    if state.terminal:
        raise AlreadyTerminal(f"job {state.id} is already {state.status}")
    meta = _meta(state, actor, None)
    if state.status is JobStatus.PENDING:
        return Cancelled(**meta, reason=reason or "cancelled while pending")
    if state.cancel_requested:
        raise Conflict(f"cancellation of job {state.id} was already requested")
    return CancelRequested(**meta, reason=reason)


def decide_requeue(
    state: JobState, worker_id: str, attempt: int, reason: str, actor: str = "dispatcher"
) -> Requeued | Cancelled | Failed:
    """Take an attempt back from a worker that is gone or shutting down."""
    _check_assignment(state, worker_id, attempt, set(ACTIVE))
    meta = _meta(state, actor, None)
    if state.cancel_requested:
        return Cancelled(**meta, worker_id=worker_id, attempt=attempt, reason="cancelled")
    if state.requeues >= MAX_REQUEUES:
        return Failed(
            **meta,
            worker_id=worker_id,
            attempt=attempt,
            error=f"lost its worker {state.requeues + 1} times; last: {reason}",
        )
    return Requeued(**meta, worker_id=worker_id, attempt=attempt, reason=reason)


def decide_hold(state: JobState, reason: str) -> Held | None:
    """Record why a pending job cannot be placed, once per change of reason."""
    if state.status is not JobStatus.PENDING or state.pending_reason == reason:
        return None
    return Held(**_meta(state, "dispatcher", None), reason=reason)
