"""The span tree `jobstream trace` derives from a job's events: phases, timings, ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.cli.trace_command import as_dict, tree
from services.cli.trace_tree import TraceError, derive, derived_trace_id

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ev(seq: int, type_: str, ms: int, **fields: Any) -> dict[str, Any]:
    at = (T0 + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")
    return {"seq": seq, "type": type_, "at": at, "domain": "prod", "job_id": "j1", **fields}


RETRIED = [
    ev(1, "submitted", 0, spec={"name": "etl"}, schedule_id="s1"),
    ev(2, "dispatched", 10, attempt=1, worker_id="w1"),
    ev(3, "started", 15, attempt=1, worker_id="w1"),
    ev(4, "retry_scheduled", 1015, attempt=1, worker_id="w1", outcome="failed", exit_code=2, error="boom"),
    ev(6, "dispatched", 2015, attempt=2, worker_id="w2"),
    ev(5, "held", 1500, reason="no live worker has tags ['x']"),  # out of order: sorted by seq
    ev(7, "started", 2020, attempt=2, worker_id="w2"),
    ev(8, "succeeded", 2520, attempt=2, worker_id="w2", exit_code=0),
]


def test_each_attempt_has_its_queue_wait_start_delay_and_run_from_event_times() -> None:
    trace = derive(RETRIED)
    spans = as_dict(trace)["spans"]
    assert [s["name"] for s in spans] == [
        "job etl", "attempt 1", "queued", "start delay", "run", "attempt 2", "queued", "start delay", "run",
    ]  # fmt: skip
    durations = {(i, s["name"]): round(s["duration_s"], 3) for i, s in enumerate(spans)}
    assert durations[(0, "job etl")] == 2.52
    assert durations[(2, "queued")] == 0.01 and durations[(3, "start delay")] == 0.005
    assert durations[(4, "run")] == 1.0
    assert durations[(6, "queued")] == 1.0  # from the retry's decision to the next dispatch
    assert spans[4]["attributes"]["jobstream.exit_code"] == 2 and spans[4]["error"] == "boom"
    assert spans[8]["attributes"]["jobstream.exit_code"] == 0 and spans[8]["error"] is None
    assert spans[5]["attributes"]["jobstream.worker.id"] == "w2"
    assert spans[0]["attributes"]["jobstream.status"] == "succeeded"
    assert spans[0]["attributes"]["jobstream.schedule.id"] == "s1"
    assert [e["name"] for e in spans[0]["events"]] == ["held"]
    parents = {s["span_id"]: s["parent_span_id"] for s in spans}
    assert parents[spans[0]["span_id"]] is None
    assert (
        parents[spans[4]["span_id"]] == spans[1]["span_id"]
        and parents[spans[1]["span_id"]] == spans[0]["span_id"]
    )
    assert len(set(parents)) == len(spans)
    labels = [str(child.label) for child in tree(trace).children[0].children]
    assert labels[0].startswith("· held  +1.500s") and labels[2].startswith("attempt 2  +1.015s  1505.0 ms")


def test_ids_are_derived_from_the_job_or_taken_from_its_live_trace() -> None:
    first, again = as_dict(derive(RETRIED)), as_dict(derive(list(reversed(RETRIED))))
    assert first == again  # the same job, the same spans: sending twice does not duplicate ids
    assert first["trace_id"] == f"{derived_trace_id('prod', 'j1'):032x}"
    live = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = as_dict(derive(RETRIED, live))
    assert traced["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert traced["spans"][0]["parent_span_id"] == "00f067aa0ba902b7"
    assert as_dict(derive(RETRIED, "garbage"))["trace_id"] == first["trace_id"]


def test_a_running_job_shows_its_open_attempt_and_a_history_without_submit_is_refused() -> None:
    spans = as_dict(derive(RETRIED[:3]))["spans"]
    assert [s["name"] for s in spans] == ["job etl", "attempt 1", "queued", "start delay", "run"]
    assert spans[1]["attributes"]["jobstream.outcome"] == "in progress"
    assert spans[0]["attributes"]["jobstream.status"] == "running"
    with pytest.raises(TraceError, match="submitted"):
        derive(RETRIED[1:])
