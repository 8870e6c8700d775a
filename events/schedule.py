"""The schedule aggregate: its spec, its events, and the pure rules for what a due tick does.

A tick is a scheduled time. Every tick a scheduler handles leaves exactly one record on
the schedule (`fired`, `skipped`, `queued` then `fired`, or part of a `missed` run), and a
fired tick's job has an id derived from (schedule, tick), so the store itself refuses a
second job for the same tick whatever the schedulers believe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import msgspec
from msgspec import structs

from events.base import Conflict, DomainError, Event
from events.firetimes import ScheduleError, Trigger, fires_between, jitter_s, next_fire, validate
from events.job import JobSpec
from events.upcast import upcaster

MAX_TICKS_PER_PASS = 1000
DEFAULT_MISFIRE_GRACE_S = 60.0


class OverlapPolicy(StrEnum):
    """What a tick does while the schedule's previous run has not finished."""

    ALLOW = "allow"
    SKIP = "skip"
    QUEUE = "queue"
    BUFFER_ONE = "buffer_one"
    CANCEL_OTHER = "cancel_other"


class CatchupPolicy(StrEnum):
    """What happens to ticks that passed while no scheduler ran (later than `misfire_grace_s`)."""

    NONE = "none"
    FIRE_IMMEDIATELY = "fire_immediately"
    SPREAD = "spread"


class ScheduleSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    job: JobSpec
    cron: str | None = None
    interval_s: float | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    jitter_s: float = 0.0
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    catchup_policy: CatchupPolicy = CatchupPolicy.NONE
    catchup_window_s: float = 3600.0
    max_catchup: int = 100
    # A tick this late or less is simply late, not missed: it covers a scheduler failover.
    misfire_grace_s: float = DEFAULT_MISFIRE_GRACE_S
    paused: bool = False
    labels: dict[str, str] = {}
    # When `job` was made from a template: "name@version" (the version is pinned).
    template: str | None = None

    def trigger(self, anchor: datetime) -> Trigger:
        return Trigger(
            cron=self.cron, interval_s=self.interval_s, timezone=self.timezone,
            start_at=self.start_at, end_at=self.end_at,
            anchor=(self.start_at or anchor) if self.interval_s is not None else None,
        )  # fmt: skip


def check_spec(spec: ScheduleSpec, anchor: datetime) -> None:
    """Everything the types cannot say; raises ScheduleError/DomainError naming the field."""
    validate(spec.trigger(anchor))
    if not 0 <= spec.jitter_s <= 86400:
        raise DomainError("jitter_s: must be between 0 and 86400")
    if spec.catchup_window_s < 0:
        raise DomainError("catchup_window_s: must not be negative")
    if not 0 <= spec.max_catchup <= MAX_TICKS_PER_PASS:
        raise DomainError(f"max_catchup: must be between 0 and {MAX_TICKS_PER_PASS}")
    if spec.misfire_grace_s < 0:
        raise DomainError("misfire_grace_s: must not be negative")


# ---- events -----------------------------------------------------------------------


class ScheduleEvent(Event, frozen=True, kw_only=True):
    schedule_id: str


class Created(ScheduleEvent, frozen=True, kw_only=True, tag="created"):
    spec: ScheduleSpec


class Updated(ScheduleEvent, frozen=True, kw_only=True, tag="updated"):
    spec: ScheduleSpec


class Paused(ScheduleEvent, frozen=True, kw_only=True, tag="paused"):
    note: str = ""


class Resumed(ScheduleEvent, frozen=True, kw_only=True, tag="resumed"):
    note: str = ""


class Deleted(ScheduleEvent, frozen=True, kw_only=True, tag="deleted"):
    pass


class Fired(ScheduleEvent, frozen=True, kw_only=True, tag="fired"):
    """A job was submitted for `tick`; `reason` is tick, catchup, queued, run_now or backfill."""

    tick: datetime
    job_id: str
    reason: str = "tick"
    planned_at: datetime | None = None  # tick plus jitter, or the spread slot of a catch-up
    # Jobs of this schedule cancelled to make room (overlap policy cancel_other).
    cancelled: list[str] = []


SkipKind = Literal["overlap", "buffer_full", "other"]
# What `reason` said in v1, before the detail: `reason` still reads the same in v2.
_SKIP_PREFIX: dict[str, str] = {"buffer_full": "overlap: buffer full ", "overlap": "overlap: ", "other": ""}


class Skipped(ScheduleEvent, frozen=True, kw_only=True, tag="skipped"):
    """A tick not run. v2 split v1's free-text `reason` into `kind`, which counts and filters
    can rely on, and `detail`, for people; `reason` is still there, as a property."""

    v: int = 2
    tick: datetime
    kind: SkipKind
    detail: str = ""

    @property
    def reason(self) -> str:
        return _SKIP_PREFIX[self.kind] + self.detail


@upcaster("schedule", "skipped", 1)
def _skipped_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 `reason` text → v2 `kind` and `detail`, so that `reason` reads back unchanged."""
    out = {k: v for k, v in payload.items() if k != "reason"}
    reason = str(payload.get("reason", ""))
    for kind, prefix in _SKIP_PREFIX.items():  # longest prefix first
        if reason.startswith(prefix):
            return {**out, "kind": kind, "detail": reason[len(prefix) :]}
    raise AssertionError("the empty prefix matches every reason")  # pragma: no cover


WaitKind = Literal["overlap", "catchup", "backfill"]


class Queued(ScheduleEvent, frozen=True, kw_only=True, tag="queued"):
    """The tick waits: for the previous run to finish (overlap), its spread catch-up slot
    (catchup), or its turn in a backfill that runs one tick at a time (backfill)."""

    tick: datetime
    not_before: datetime | None = None
    reason: str = ""
    kind: WaitKind = "overlap"


class Missed(ScheduleEvent, frozen=True, kw_only=True, tag="missed"):
    """Ticks that passed while no scheduler ran and that the catch-up policy does not run."""

    first: datetime
    last: datetime
    count: int


AnyScheduleEvent = Created | Updated | Paused | Resumed | Deleted | Fired | Skipped | Queued | Missed


# ---- state ------------------------------------------------------------------------


class Waiting(msgspec.Struct, frozen=True, omit_defaults=True):
    tick: datetime
    not_before: datetime | None = None
    kind: WaitKind = "overlap"


FIRE_REASON: dict[str, str] = {"overlap": "queued", "catchup": "catchup", "backfill": "backfill"}


class ScheduleState(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    domain: str
    spec: ScheduleSpec
    created_at: datetime
    updated_at: datetime
    paused: bool = False
    pause_note: str | None = None
    deleted: bool = False
    # The latest tick handled; the next regular tick is the first fire time after it.
    cursor: datetime | None = None
    waiting: tuple[Waiting, ...] = ()
    last_tick: datetime | None = None
    last_fired_at: datetime | None = None
    last_job_id: str | None = None
    fired: int = 0
    skipped: int = 0
    missed: int = 0

    @property
    def trigger(self) -> Trigger:
        return self.spec.trigger(self.created_at)

    @property
    def status(self) -> str:
        if self.deleted:
            return "deleted"
        if self.paused:
            return "paused"
        if self.problem is not None:
            return "invalid"
        if self.next_tick() is None and not self.waiting:
            return "ended"
        return "active"

    def next_tick(self) -> datetime | None:
        """The next regular tick (not counting queued ones)."""
        try:
            return next_fire(self.trigger, self.cursor or self.created_at)
        except ScheduleError:  # see `problem`
            return None

    @property
    def problem(self) -> str | None:
        """Why a trigger stored by an earlier version no longer parses, if it does not: such a
        schedule never fires (and says why) rather than stopping the scheduler or a replay."""
        try:
            validate(self.trigger)
        except ScheduleError as exc:
            return str(exc)
        return None


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def evolve_schedule(state: ScheduleState | None, event: AnyScheduleEvent) -> ScheduleState | None:
    """Fold one event into a schedule's state. Never raises; nothing follows a deletion."""
    if state is None:
        if isinstance(event, Created):
            return ScheduleState(
                id=event.schedule_id, domain=event.domain, spec=event.spec,
                created_at=event.at, updated_at=event.at, paused=event.spec.paused,
                cursor=event.at,
            )  # fmt: skip
        return None
    if state.deleted or isinstance(event, Created):
        return state
    at = event.at
    match event:
        case Updated(spec=spec):
            return structs.replace(state, spec=spec, updated_at=at)
        case Paused(note=note):
            return structs.replace(state, paused=True, pause_note=note or None, updated_at=at)
        case Resumed():
            # Ticks that fell while paused are not run: the schedule goes on from now.
            return structs.replace(
                state, paused=False, pause_note=None, cursor=_later(state.cursor, at), updated_at=at
            )
        case Deleted():
            return structs.replace(state, deleted=True, waiting=(), updated_at=at)
        case Fired(tick=tick, job_id=job_id, reason=reason):
            waiting = tuple(w for w in state.waiting if w.tick != tick)
            cursor = _later(state.cursor, tick) if reason in ("tick", "catchup") else state.cursor
            return structs.replace(
                state, cursor=cursor, waiting=waiting, last_tick=tick, last_fired_at=at,
                last_job_id=job_id, fired=state.fired + 1, updated_at=at,
            )  # fmt: skip
        case Skipped(tick=tick):
            return structs.replace(
                state, cursor=_later(state.cursor, tick), skipped=state.skipped + 1, updated_at=at
            )
        case Queued(tick=tick, not_before=not_before, kind=kind):
            waiting = (*state.waiting, Waiting(tick, not_before, kind))
            cursor = state.cursor if kind == "backfill" else _later(state.cursor, tick)
            return structs.replace(state, cursor=cursor, waiting=waiting, updated_at=at)
        case Missed(last=last, count=count):
            return structs.replace(
                state, cursor=_later(state.cursor, last), missed=state.missed + count, updated_at=at
            )
    return state


# ---- decisions --------------------------------------------------------------------


def tick_job_id(domain: str, schedule_id: str, tick: datetime) -> str:
    """The one job a tick may ever create: derived, so a second submission is refused by the store."""
    digest = hashlib.sha256(f"{domain}\0{schedule_id}\0{tick.isoformat()}".encode()).hexdigest()
    return "s" + digest[:25]


def tick_msg_id(schedule_id: str, tick: datetime) -> str:
    return f"sched:{schedule_id}:{tick.isoformat()}"


@dataclass(frozen=True)
class Fire:
    """Submit the tick's job, then record `event` (a Fired) on the schedule."""

    job_id: str
    tick: datetime
    event: Fired


@dataclass
class Plan:
    """What one pass over a schedule does, in order: records and fires, and jobs to cancel."""

    steps: list[Fire | Skipped | Queued | Missed] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    wake_at: datetime | None = None


def _meta(state: ScheduleState, actor: str) -> dict[str, Any]:
    return {"domain": state.domain, "schedule_id": state.id, "actor": actor, "correlation_id": state.id}


def planned_at(state: ScheduleState, tick: datetime) -> datetime:
    return tick + timedelta(seconds=jitter_s(state.id, tick, state.spec.jitter_s))


def plan_due(
    state: ScheduleState, active: list[str], now: datetime, actor: str = "scheduler", cause: str | None = None
) -> Plan:
    """Decide everything due by `now`: missed ticks, queued ones whose turn came, and new ticks.

    `active` are the schedule's jobs not yet finished, oldest first (the overlap policies'
    "previous run"). Pure: the scheduler appends what the plan says, in order. `cause` is the
    id of the schedule's last event, the state the plan was decided on: the first record
    names it as its causation, each later one the record before it (the order they land in).
    """
    if state.deleted or state.paused or state.problem is not None:
        return Plan()
    plan = _Planner(state, active, now, actor).run()
    plan.steps = _chained(plan.steps, cause)
    return plan


def _chained(
    steps: list[Fire | Skipped | Queued | Missed], cause: str | None
) -> list[Fire | Skipped | Queued | Missed]:
    out: list[Fire | Skipped | Queued | Missed] = []
    for step in steps:
        if isinstance(step, Fire):
            fired = structs.replace(step.event, causation_id=cause)
            out.append(Fire(step.job_id, step.tick, fired))
            cause = fired.id
        else:
            record = structs.replace(step, causation_id=cause)
            out.append(record)
            cause = record.id
    return out


class _Planner:
    def __init__(self, state: ScheduleState, active: list[str], now: datetime, actor: str) -> None:
        self.state = state
        self.spec = state.spec
        self.now = now
        self.meta = _meta(state, actor)
        self.running = list(active)
        self.waiting = list(state.waiting)
        self.plan = Plan()

    def run(self) -> Plan:
        self._release_waiting()
        trigger = self.state.trigger
        after = self.state.cursor or self.state.created_at
        ticks = fires_between(trigger, after, self.now, MAX_TICKS_PER_PASS)
        due: list[datetime] = []
        for tick in ticks:  # a prefix: with jitter a tick may be past but not yet due
            if planned_at(self.state, tick) > self.now:
                break
            due.append(tick)
        grace = self.spec.misfire_grace_s
        late = [t for t in due if (self.now - planned_at(self.state, t)).total_seconds() > grace]
        if late:
            self._catch_up(late)
        for tick in due[len(late) :]:
            self._regular(tick)
        upcoming = ticks[len(due)] if len(due) < len(ticks) else next_fire(trigger, due[-1] if due else after)
        if upcoming is not None:
            self._wake(planned_at(self.state, upcoming))
        if len(ticks) == MAX_TICKS_PER_PASS and len(due) == len(ticks):
            self._wake(self.now)  # more ticks behind these: another pass at once
        return self.plan

    def _wake(self, at: datetime) -> None:
        self.plan.wake_at = at if self.plan.wake_at is None else min(self.plan.wake_at, at)

    def _fire(self, tick: datetime, reason: str, planned: datetime | None) -> None:
        job_id = tick_job_id(self.state.domain, self.state.id, tick)
        cancelled: list[str] = []
        if self.spec.overlap_policy is OverlapPolicy.CANCEL_OTHER and self.running:
            cancelled, self.running = self.running, []
            self.plan.cancel.extend(cancelled)
        event = Fired(
            **self.meta, tick=tick, job_id=job_id, reason=reason, planned_at=planned, cancelled=cancelled
        )
        self.plan.steps.append(Fire(job_id, tick, event))
        self.running.append(job_id)

    def _queue(
        self, tick: datetime, reason: str, not_before: datetime | None = None, kind: WaitKind = "overlap"
    ) -> None:
        self.waiting.append(Waiting(tick, not_before, kind))
        self.plan.steps.append(
            Queued(**self.meta, tick=tick, not_before=not_before, reason=reason, kind=kind)
        )

    def _release_waiting(self) -> None:
        """Ticks already waiting go first, in order, when their slot came and the policy lets them."""
        queue_policy = self.spec.overlap_policy in (OverlapPolicy.QUEUE, OverlapPolicy.BUFFER_ONE)
        while self.waiting:
            head = self.waiting[0]
            if head.not_before is not None and head.not_before > self.now:
                self._wake(head.not_before)
                return
            if (queue_policy or head.kind == "backfill") and self.running:
                return
            self.waiting.pop(0)
            self._fire(head.tick, FIRE_REASON[head.kind], head.not_before)

    def _regular(self, tick: datetime) -> None:
        policy = self.spec.overlap_policy
        queue_policy = policy in (OverlapPolicy.QUEUE, OverlapPolicy.BUFFER_ONE)
        if queue_policy and self.waiting:
            if policy is OverlapPolicy.BUFFER_ONE:
                detail = f"while {self.running[-1] if self.running else 'a run'} waits"
                self.plan.steps.append(Skipped(**self.meta, tick=tick, kind="buffer_full", detail=detail))
            else:
                self._queue(tick, "earlier ticks are waiting")
            return
        if not self.running or policy in (OverlapPolicy.ALLOW, OverlapPolicy.CANCEL_OTHER):
            self._fire(tick, "tick", planned_at(self.state, tick))
            return
        previous = self.running[-1]
        if policy is OverlapPolicy.SKIP:
            detail = f"previous run {previous} not finished"
            self.plan.steps.append(Skipped(**self.meta, tick=tick, kind="overlap", detail=detail))
        else:
            self._queue(tick, f"waiting for {previous}")

    def _catch_up(self, late: list[datetime]) -> None:
        spec = self.spec
        keep: list[datetime] = []
        if spec.catchup_policy is not CatchupPolicy.NONE and spec.max_catchup:
            window_start = self.now - timedelta(seconds=spec.catchup_window_s)
            keep = [t for t in late if t >= window_start][-spec.max_catchup :]
        kept = set(keep)
        dropped = [t for t in late if t not in kept]
        if dropped:
            self.plan.steps.append(
                Missed(**self.meta, first=dropped[0], last=dropped[-1], count=len(dropped))
            )
        if spec.catchup_policy is CatchupPolicy.FIRE_IMMEDIATELY:
            for tick in keep:
                self._regular_catchup(tick)
        elif keep:
            step = spec.catchup_window_s / len(keep)
            for i, tick in enumerate(keep):
                self._queue(tick, "catch-up spread", self.now + timedelta(seconds=i * step), "catchup")
            self._release_waiting()

    def _regular_catchup(self, tick: datetime) -> None:
        """A caught-up tick follows the overlap policy like any other, but says why it is late."""
        before = len(self.plan.steps)
        self._regular(tick)
        step = self.plan.steps[before] if len(self.plan.steps) > before else None
        if isinstance(step, Fire):
            event = structs.replace(step.event, reason="catchup", planned_at=None)
            self.plan.steps[before] = Fire(step.job_id, step.tick, event)


def decide_create(domain: str, schedule_id: str, spec: ScheduleSpec, actor: str, now: datetime) -> Created:
    check_spec(spec, now)
    return Created(domain=domain, schedule_id=schedule_id, actor=actor, correlation_id=schedule_id, spec=spec)


def decide_update(state: ScheduleState, spec: ScheduleSpec, actor: str) -> Updated:
    _alive(state)
    check_spec(spec, state.created_at)
    return Updated(**_meta(state, actor), spec=spec)


def decide_pause(state: ScheduleState, actor: str, note: str = "") -> Paused:
    _alive(state)
    if state.paused:
        raise Conflict(f"schedule {state.id} is already paused")
    return Paused(**_meta(state, actor), note=note)


def decide_resume(state: ScheduleState, actor: str, note: str = "") -> Resumed:
    _alive(state)
    if not state.paused:
        raise Conflict(f"schedule {state.id} is not paused")
    return Resumed(**_meta(state, actor), note=note)


def decide_delete(state: ScheduleState, actor: str) -> Deleted:
    _alive(state)
    return Deleted(**_meta(state, actor))


def _alive(state: ScheduleState) -> None:
    if state.deleted:
        raise Conflict(f"schedule {state.id} was deleted")


def decide_run_now(state: ScheduleState, actor: str, now: datetime, job_id: str) -> Fired:
    """A job now, counted in the history, without moving the next tick."""
    _alive(state)
    return Fired(**_meta(state, actor), tick=now, job_id=job_id, reason="run_now", planned_at=now)


def backfill_ticks(state: ScheduleState, start: datetime, end: datetime, now: datetime) -> list[datetime]:
    """The schedule's ticks in (start, end], which must lie in the past; at most MAX_TICKS_PER_PASS."""
    _alive(state)
    if start.tzinfo is None or end.tzinfo is None:
        raise DomainError("start and end need a time zone offset, e.g. 2026-01-01T00:00:00Z")
    if start >= end:
        raise DomainError("start must be before end")
    if end > now:
        raise DomainError("end must not be in the future: backfill fires ticks that have passed")
    ticks = fires_between(state.trigger, start, end, MAX_TICKS_PER_PASS + 1)
    if len(ticks) > MAX_TICKS_PER_PASS:
        raise DomainError(f"the range holds more than {MAX_TICKS_PER_PASS} ticks; backfill it in parts")
    return ticks


def decide_backfill_fire(state: ScheduleState, tick: datetime, actor: str) -> Fired:
    return Fired(
        **_meta(state, actor), tick=tick, job_id=tick_job_id(state.domain, state.id, tick), reason="backfill"
    )


def decide_backfill_queue(state: ScheduleState, tick: datetime, actor: str) -> Queued:
    return Queued(**_meta(state, actor), tick=tick, reason="backfill, one at a time", kind="backfill")
