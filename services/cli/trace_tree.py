"""A job's span tree derived from its events alone: timings are the events' own times.

So a trace exists for every job in the log, also one that ran before tracing was turned on:
job -> attempt n -> queued (submitted or requeued -> dispatched), start delay (dispatched ->
started), run (started -> outcome). Ids are derived from the job id (or taken from the trace
the job was submitted in), so sending the same job twice gives the same spans. Pure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Attr = str | int | float | bool

OUTCOMES = {"succeeded", "failed", "timed_out", "cancelled", "retry_scheduled", "requeued"}
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


class TraceError(ValueError):
    """The events do not make a job's history (no `submitted`)."""


@dataclass
class Node:
    name: str
    start: datetime
    end: datetime
    span_id: int
    attributes: dict[str, Attr] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    events: list[tuple[str, datetime, dict[str, Attr]]] = field(default_factory=list)
    error: str | None = None  # set: the span's status is an error, with this description

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass
class Trace:
    trace_id: int
    parent_span_id: int | None  # the span the job was submitted in, when it was traced live
    root: Node


def _hash(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:16], "big")


def derived_trace_id(domain: str, job_id: str) -> int:
    """The trace id of a job submitted without a trace context: a pure function of its id."""
    return _hash("jobstream-trace", domain, job_id) or 1


def _span_id(job_id: str, path: str) -> int:
    return (_hash("jobstream-span", job_id, path) >> 64) or 1


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))


def _parse_traceparent(traceparent: str | None) -> tuple[int, int] | None:
    parts = (traceparent or "").split("-")
    try:
        ids = (int(parts[1], 16), int(parts[2], 16)) if len(parts) >= 4 else None
    except ValueError:
        return None
    return ids if ids and ids[0] and ids[1] else None


@dataclass
class _Attempt:
    n: int
    worker: str
    queued_at: datetime
    dispatched_at: datetime
    started_at: datetime | None = None


def derive(events: list[dict[str, Any]], traceparent: str | None = None) -> Trace:
    """The span tree of one job from its events (as `GET /jobs/{id}/events` gives them)."""
    ordered = sorted(events, key=lambda e: int(e.get("seq", 0)))
    submitted = next((e for e in ordered if e.get("type") == "submitted"), None)
    if submitted is None:
        raise TraceError("the job's events hold no `submitted`")
    job_id, domain = str(submitted["job_id"]), str(submitted["domain"])
    spec = submitted.get("spec") or {}
    live = _parse_traceparent(traceparent)
    trace_id, parent = live if live else (derived_trace_id(domain, job_id), None)
    begin = _at(submitted)
    root = Node(f"job {spec.get('name', job_id)}", begin, begin, _span_id(job_id, "job"))
    root.attributes.update(
        {
            "jobstream.job.id": job_id,
            "jobstream.domain": domain,
            "jobstream.job.name": str(spec.get("name", "")),
        }
    )
    if submitted.get("schedule_id"):
        root.attributes["jobstream.schedule.id"] = str(submitted["schedule_id"])
    queued_at = begin
    open_: _Attempt | None = None
    status = "pending"
    for event in ordered[ordered.index(submitted) + 1 :]:
        kind, at = str(event.get("type")), _at(event)
        root.end = max(root.end, at)
        if kind == "dispatched":
            open_ = _Attempt(int(event["attempt"]), str(event["worker_id"]), queued_at, at)
            status = "dispatched"
        elif kind == "started" and open_ is not None:
            open_.started_at = at
            status = "running"
        elif kind in OUTCOMES and open_ is not None and int(event.get("attempt", -1)) == open_.n:
            root.children.append(_attempt_node(job_id, open_, at, event))
            open_, queued_at, status = None, at, kind
        elif kind in ("held", "cancel_requested", "cancelled"):
            reason = str(event.get("reason") or "")
            root.events.append((kind, at, {"reason": reason} if reason else {}))
            status = "cancelled" if kind == "cancelled" else status
        if kind in TERMINAL:
            status = kind
    if open_ is not None:  # still out on a worker: the attempt so far
        root.children.append(_attempt_node(job_id, open_, root.end, None))
    root.attributes["jobstream.status"] = status
    if status in ("failed", "timed_out"):
        root.error = status
    return Trace(trace_id, parent, root)


def _attempt_node(job_id: str, a: _Attempt, end: datetime, outcome: dict[str, Any] | None) -> Node:
    path = f"attempt/{a.n}"
    node = Node(f"attempt {a.n}", a.queued_at, end, _span_id(job_id, path))
    node.attributes.update({"jobstream.attempt": a.n, "jobstream.worker.id": a.worker})
    node.children.append(Node("queued", a.queued_at, a.dispatched_at, _span_id(job_id, f"{path}/queued")))
    if a.started_at is not None:
        node.children.append(
            Node("start delay", a.dispatched_at, a.started_at, _span_id(job_id, f"{path}/start"))
        )
        run = Node("run", a.started_at, end, _span_id(job_id, f"{path}/run"))
        run.attributes["jobstream.worker.id"] = a.worker
        node.children.append(run)
    if outcome is None:
        node.attributes["jobstream.outcome"] = "in progress"
        return node
    result = str(outcome.get("outcome") or outcome["type"])  # retry_scheduled says which outcome
    node.attributes["jobstream.outcome"] = result
    if outcome.get("exit_code") is not None:
        node.attributes["jobstream.exit_code"] = int(outcome["exit_code"])
    if result in ("failed", "timed_out"):
        node.error = str(outcome.get("error") or result)
    for child in node.children:
        if child.name == "run":
            child.attributes.update({k: v for k, v in node.attributes.items() if k != "jobstream.attempt"})
            child.error = node.error
    return node


def walk(node: Node, depth: int = 0) -> list[tuple[int, Node]]:
    """Every node with its depth, parents first."""
    out = [(depth, node)]
    for child in node.children:
        out += walk(child, depth + 1)
    return out
