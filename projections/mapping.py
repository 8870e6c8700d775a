"""Pure event/state → row mappings, and the full JSON views the API returns."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import structs

from events.base import Event
from events.job import JobState
from events.subjects import EventSubject
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


def job_row(state: JobState, seq: int) -> dict[str, Any]:
    spec = state.spec
    return {
        "domain": state.domain,
        "id": state.id,
        "name": spec.name,
        "status": state.status.value,
        "executor": spec.executor.__struct_config__.tag,
        "priority": spec.priority,
        "user": spec.user,
        "tags": list(spec.tags),
        "labels": [f"{k}={v}" for k, v in sorted(spec.labels.items())],
        "worker_id": state.worker_id,
        "attempt": state.attempt,
        "retries": state.retries,
        "requeues": state.requeues,
        "pending_reason": state.pending_reason,
        "cancel_requested": state.cancel_requested,
        "submitted_at": state.submitted_at,
        "dispatched_at": state.dispatched_at,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "updated_at": state.updated_at,
        "exit_code": state.exit_code,
        "error": state.error,
        "retry_of": state.retry_of,
        "last_seq": seq,
        "state": to_json(state),
    }


def attempt_rows(state: JobState) -> list[dict[str, Any]]:
    """One row per attempt; an attempt queued when the job was submitted or its previous attempt ended."""
    rows = []
    queued = state.submitted_at
    for a in state.attempts:
        rows.append(
            {
                "domain": state.domain,
                "job_id": state.id,
                "n": a.n,
                "worker_id": a.worker_id,
                "status": a.status,
                "queued_at": queued,
                "dispatched_at": a.dispatched_at,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "exit_code": a.exit_code,
                "error": a.error,
            }
        )
        queued = a.finished_at or a.dispatched_at
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
        "last_seq": seq,
        "state": to_json(state),
    }


def event_row(seq: int, subject: EventSubject, event: Event, data: bytes) -> dict[str, Any]:
    return {
        "seq": seq,
        "domain": subject.domain,
        "aggregate": subject.aggregate,
        "aggregate_id": subject.aggregate_id,
        "type": subject.type,
        "subject": ".".join(
            ["ev", subject.domain, subject.aggregate, subject.aggregate_id, subject.type]
            + ([subject.worker_id] if subject.worker_id else [])
        ),
        "at": event.at,
        "actor": event.actor,
        "data": data.decode(),
    }


def liveness_row(beat: Heartbeat) -> dict[str, Any]:
    return {
        "domain": beat.domain,
        "id": beat.worker_id,
        "last_heartbeat_at": beat.at,
        "running": list(beat.running),
        "draining": beat.draining,
    }
