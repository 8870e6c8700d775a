"""The store's pure rules: what a refusal means, how long to back off, which appends get a msg id."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from events.job import (
    Cancelled,
    CancelRequested,
    Dispatched,
    Failed,
    Held,
    JobSpec,
    Requeued,
    RetryScheduled,
    ShellExecutor,
    Started,
    Submitted,
    Succeeded,
    TimedOut,
)
from events.store import (
    BACKOFF_CAP_S,
    AppendError,
    AppendUncertain,
    backoff_s,
    classify,
    default_msg_id,
    job_append,
)

SPEC = JobSpec(name="t", executor=ShellExecutor(script="true"))
META: dict[str, Any] = {"domain": "blue", "actor": "test", "job_id": "j1"}


@pytest.mark.parametrize(
    ("code", "err_code", "description", "kind"),
    [
        (400, 10071, "wrong last sequence: 7", "conflict"),
        # The clustered pre-check: a conflict only if the scope really moved.
        (400, 10164, "wrong last sequence", "maybe_conflict"),
        (503, None, "no stream answers this subject", "transient"),
        (503, 10008, "JetStream system temporarily unavailable", "transient"),
        (400, 10158, "msg id in process", "transient"),
        (503, 10163, "expected last sequence per subject temporarily unavailable", "transient"),
        (429, 0, "too many publishes in flight for domain blue; retry", "transient"),
        # Unknown codes fall back on the text.
        (400, None, "Wrong Last Sequence: 3", "maybe_conflict"),
        (400, 99999, "subject is in process", "transient"),
        (None, None, "temporarily unavailable", "transient"),
        # Refusals no retry can fix.
        (400, 0, "refused: nothing may be published on x through the ingress", "fatal"),
        (400, 10054, "maximum messages exceeded", "fatal"),
        (None, None, "unreadable publish acknowledgement", "fatal"),
    ],
)
def test_classify(code: int | None, err_code: int | None, description: str, kind: str) -> None:
    assert classify(code, err_code, description) == kind


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.05), (1, 0.1), (2, 0.2), (4, 0.8), (5, 1.0), (60, 1.0)]:
        draws = [backoff_s(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # spread over the whole range, not fixed
    assert BACKOFF_CAP_S == 1.0


def test_decisions_that_can_be_ambiguous_get_a_default_msg_id() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    per_attempt = [
        Started(**META, worker_id="w1", attempt=3),
        Succeeded(**META, worker_id="w1", attempt=3),
        Failed(**META, worker_id="w1", attempt=3),
        TimedOut(**META, worker_id="w1", attempt=3),
        Cancelled(**META, worker_id="w1", attempt=3),
        RetryScheduled(**META, worker_id="w1", attempt=3, outcome="failed", not_before=at),
        Requeued(**META, worker_id="w1", attempt=3, reason="lost"),
    ]
    ids = [job_append(e, 5).msg_id for e in per_attempt]
    assert ids == [f"blue.j1.3.{e.type}" for e in per_attempt]
    assert len(set(ids)) == len(ids)  # another decision at the same attempt has another id
    assert default_msg_id(CancelRequested(**META)) == "blue.j1.0.cancel_requested"


def test_other_appends_get_no_default_msg_id() -> None:
    dispatched = Dispatched(**META, worker_id="w1", attempt=1, spec=SPEC)
    assert job_append(dispatched, 1).msg_id is None  # two dispatchers must conflict, not dedupe
    assert job_append(Held(**META, reason="no worker"), 1).msg_id is None
    assert job_append(Submitted(**META, spec=SPEC), 0).msg_id is None


def test_an_explicit_msg_id_wins() -> None:
    started = Started(**META, worker_id="w1", attempt=1)
    assert job_append(started, 2, msg_id="mine").msg_id == "mine"


def test_uncertain_says_it_may_have_landed_and_keeps_the_last_error() -> None:
    last = AppendError(503, 10008, "JetStream system temporarily unavailable")
    exc = AppendUncertain("ev.blue.job.j1.started", last, maybe_landed=True)
    assert isinstance(exc, AppendError)
    assert "may or may not have landed" in str(exc) and "ev.blue.job.j1.started" in str(exc)
    assert (exc.code, exc.err_code, exc.last_error) == (503, 10008, last)
    assert "did not land" in str(AppendUncertain("s", last, maybe_landed=False))


def test_a_start_msg_id_names_the_run_of_the_worker() -> None:
    """A new run of a worker id must not take its predecessor's landed start for its own."""
    from events.job import Started
    from events.store import default_msg_id

    def start(incarnation: str) -> Started:
        return Started(
            domain="prod", actor="w", job_id="j1", worker_id="w1", attempt=1, incarnation=incarnation
        )

    assert default_msg_id(start("run-a")) == "prod.j1.1.started.run-a"
    assert default_msg_id(start("run-a")) != default_msg_id(start("run-b"))
    assert default_msg_id(start("")) == "prod.j1.1.started"  # an older worker's start
