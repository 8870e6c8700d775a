"""Pure event/state → row mappings, and the full JSON views the API returns."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import structs

from events.domain import DomainState
from events.job import JobState
from events.schedule import AnyScheduleEvent, Fired, Missed, Queued, ScheduleState, Skipped, planned_at
from events.template import TemplateState
from events.worker import Heartbeat, WorkerState

_encoder = msgspec.json.Encoder()


def to_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def full(value: Any) -> Any:
    """Builtins of a struct with every field present (msgspec would omit defaults), for API answers."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        config = value.__struct_config__
        if isinstance(config.tag, str) and config.tag_field:
            out[config.tag_field] = config.tag
        for field in structs.fields(value):
            out[field.encode_name] = full(getattr(value, field.name))
        return out
    if isinstance(value, list | tuple):
        return [full(v) for v in value]
    if isinstance(value, dict):
        return {k: full(v) for k, v in value.items()}
    return msgspec.to_builtins(value)


def _labels(labels: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(labels.items())] if labels else []


# The job, attempt and run rows are tuples in their table's column order (schema.JOBS,
# ATTEMPTS, RUNS): they are built for every changed job of every batch, and a tuple costs a
# fraction of a dict both to build and to turn into Arrow columns (projector._columns).


def job_row(state: JobState, seq: int) -> tuple[Any, ...]:
    """A `jobs` row, in schema.JOBS order."""
    spec = state.spec
    return (
        state.domain, state.id, spec.name, state.status.value, spec.executor.__struct_config__.tag,
        spec.priority, spec.user, list(spec.tags), _labels(spec.labels), state.worker_id,
        state.attempt, state.retries, state.requeues, state.pending_reason, state.cancel_requested,
        state.submitted_at, state.dispatched_at, state.started_at, state.finished_at,
        state.updated_at, state.exit_code, state.error, state.retry_of, seq, to_json(state),
    )  # fmt: skip


def attempt_rows(state: JobState) -> list[tuple[Any, ...]]:
    """One row per attempt (schema.ATTEMPTS order); an attempt queued when the job was submitted
    or its previous attempt ended."""
    rows = []
    queued = state.submitted_at
    domain, job_id = state.domain, state.id
    for a in state.attempts:
        rows.append(
            (domain, job_id, a.n, a.worker_id, a.status, queued, a.dispatched_at, a.started_at,
             a.finished_at, a.exit_code, a.error)
        )  # fmt: skip
        queued = a.finished_at or a.dispatched_at
    return rows


def run_rows(state: JobState) -> list[tuple[Any, ...]]:
    """One flat analytics row per attempt (schema.RUNS order), queued as in `attempt_rows`.
    Times come from events only, never the clock, so a replay writes the same rows; lateness is
    how long after its tick a scheduled job was submitted. Written inline (no call to
    attempt_rows): it runs for every changed job of every batch."""
    if not state.attempts:
        return []
    spec = state.spec
    tags = list(spec.tags)
    labels = _labels(spec.labels)
    executor = spec.executor.__struct_config__.tag
    tick = state.tick
    lateness = (state.submitted_at - tick).total_seconds() if tick is not None else None
    domain, job_id, name, user = state.domain, state.id, spec.name, spec.user
    schedule_id, template = state.schedule_id, state.template
    rows = []
    queued = state.submitted_at
    for a in state.attempts:
        dispatched, started, finished = a.dispatched_at, a.started_at, a.finished_at
        ran = (finished - started).total_seconds() if finished is not None and started is not None else None
        rows.append(
            (domain, job_id, name, tags, labels, user, a.worker_id, executor, a.n, a.status,
             a.exit_code, a.error, queued, dispatched, started, finished,
             (dispatched - queued).total_seconds(),
             (started - dispatched).total_seconds() if started is not None else None,
             ran, schedule_id, tick, lateness, template)
        )  # fmt: skip
        queued = finished or dispatched
    return rows


def worker_row(state: WorkerState, seq: int) -> dict[str, Any]:
    return {
        "domain": state.domain,
        "id": state.id,
        "status": state.status.value,
        "tags": list(state.tags),
        "allowed_users": list(state.allowed_users),
        "executors": list(state.executors),
        "max_concurrency": state.max_concurrency,
        "hostname": state.host.hostname,
        "registered_at": state.registered_at,
        "updated_at": state.updated_at,
        "reason": state.reason,
        "admin_state": state.admin_state,
        "last_seq": seq,
        "state": to_json(state),
    }


def schedule_row(state: ScheduleState, seq: int) -> dict[str, Any]:
    spec = state.spec
    tick = None if state.paused or state.deleted else state.next_tick()
    return {
        "domain": state.domain,
        "id": state.id,
        "name": spec.name,
        "status": state.status,
        "cron": spec.cron,
        "interval_s": spec.interval_s,
        "timezone": spec.timezone,
        "overlap_policy": spec.overlap_policy.value,
        "catchup_policy": spec.catchup_policy.value,
        "labels": [f"{k}={v}" for k, v in sorted(spec.labels.items())],
        "next_fire_at": planned_at(state, tick) if tick else None,
        "last_tick": state.last_tick,
        "last_fired_at": state.last_fired_at,
        "last_job_id": state.last_job_id,
        "fired": state.fired,
        "skipped": state.skipped,
        "missed": state.missed,
        "waiting": len(state.waiting),
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "last_seq": seq,
        "state": to_json(state),
    }


def schedule_run_row(seq: int, event: AnyScheduleEvent) -> dict[str, Any] | None:
    """A tick's record as a history row; None for events that are not about a tick."""
    row: dict[str, Any] = {
        "seq": seq, "domain": event.domain, "schedule_id": event.schedule_id, "outcome": event.type,
        "recorded_at": event.at, "planned_at": None, "lateness_s": None, "job_id": None,
        "reason": None, "count": 1,
    }  # fmt: skip
    match event:
        case Fired(tick=tick, job_id=job_id, reason=reason, planned_at=planned):
            row.update(tick=tick, job_id=job_id, reason=reason, planned_at=planned)
            if reason in ("tick", "catchup", "queued"):
                row["lateness_s"] = (event.at - (planned or tick)).total_seconds()
        case Skipped(tick=tick, reason=reason):
            row.update(tick=tick, reason=reason)
        case Queued(tick=tick, reason=reason, not_before=not_before):
            row.update(tick=tick, reason=reason, planned_at=not_before)
        case Missed(first=first, last=last, count=count):
            row.update(tick=first, reason=f"missed {count} ticks up to {last.isoformat()}", count=count)
        case _:
            return None
    return row


def template_row(state: TemplateState, seq: int) -> dict[str, Any]:
    return {
        "domain": state.domain,
        "name": state.name,
        "status": "deleted" if state.deleted else "active",
        "latest_version": state.latest.version,
        "updated_at": state.updated_at,
        "last_seq": seq,
        "state": to_json(state),
    }


def domain_row(state: DomainState, seq: int) -> dict[str, Any]:
    return {
        "name": state.name,
        "status": state.status,
        "description": state.description,
        "tokens": len(state.tokens),
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "last_seq": seq,
        "state": to_json(state),
    }


def liveness_row(beat: Heartbeat) -> dict[str, Any]:
    return {
        "domain": beat.domain,
        "id": beat.worker_id,
        "last_heartbeat_at": beat.at,
        "running": list(beat.running),
        "draining": beat.draining,
    }
