"""evolve/decide for jobs: the lifecycle rules, with no server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events.base import Conflict
from events.job import (
    AlreadyTerminal,
    Cancelled,
    CancelRequested,
    Failed,
    JobSpec,
    JobState,
    JobStatus,
    Outcome,
    Requeued,
    RetryScheduled,
    ShellExecutor,
    StaleAssignment,
    Started,
    Submitted,
    Succeeded,
    TimedOut,
    decide_cancel,
    decide_dispatch,
    decide_hold,
    decide_outcome,
    decide_requeue,
    decide_start,
    evolve,
    fold,
    held_by_gone_run,
    retry_delay_s,
    started_by,
    state_from_dispatch,
)

SPEC = JobSpec(name="t", executor=ShellExecutor(script="true"))


def submitted(spec: JobSpec = SPEC) -> JobState:
    state = evolve(None, Submitted(domain="prod", actor="test", job_id="j1", spec=spec))
    assert state is not None
    return state


def step(state: JobState, event: object) -> JobState:
    after = evolve(state, event)  # type: ignore[arg-type]
    assert after is not None
    return after


def running(spec: JobSpec = SPEC, worker: str = "w1") -> JobState:
    state = step(submitted(spec), decide_dispatch(submitted(spec), worker))
    start = decide_start(state, worker, 1)
    assert isinstance(start, Started)
    return step(state, start)


def test_submitted_is_pending() -> None:
    state = submitted()
    assert state.status is JobStatus.PENDING
    assert state.attempt == 0 and state.attempts == ()


def test_non_submit_first_event_gives_no_state() -> None:
    assert evolve(None, CancelRequested(domain="prod", actor="x", job_id="j1")) is None


def test_happy_path_records_attempt() -> None:
    state = running()
    assert state.status is JobStatus.RUNNING and state.worker_id == "w1"
    done = step(state, decide_outcome(state, "w1", 1, Outcome("succeeded", 0, duration_s=0.5)))
    assert done.status is JobStatus.SUCCEEDED and done.terminal
    assert done.attempts[0].status == "succeeded" and done.attempts[0].finished_at is not None


def test_events_after_terminal_are_ignored() -> None:
    state = running()
    done = step(state, decide_outcome(state, "w1", 1, Outcome("succeeded", 0)))
    again = step(done, Failed(domain="prod", actor="x", job_id="j1", attempt=1, error="late"))
    assert again is done


def test_dispatch_only_pending() -> None:
    state = running()
    with pytest.raises(Conflict):
        decide_dispatch(state, "w2")


def test_start_is_fenced_on_worker_and_attempt() -> None:
    state = step(submitted(), decide_dispatch(submitted(), "w1"))
    with pytest.raises(StaleAssignment):
        decide_start(state, "w2", 1)
    with pytest.raises(StaleAssignment):
        decide_start(state, "w1", 2)


def test_cancel_before_start_wins() -> None:
    state = step(submitted(), decide_dispatch(submitted(), "w1"))
    state = step(state, decide_cancel(state, "admin"))
    assert state.cancel_requested
    assert isinstance(decide_start(state, "w1", 1), Cancelled)


def test_cancel_pending_ends_at_once() -> None:
    event = decide_cancel(submitted(), "admin", "no longer needed")
    assert isinstance(event, Cancelled)
    assert step(submitted(), event).status is JobStatus.CANCELLED


def test_cancel_running_asks_the_worker_once() -> None:
    state = running()
    event = decide_cancel(state, "admin")
    assert isinstance(event, CancelRequested)
    with pytest.raises(Conflict):
        decide_cancel(step(state, event), "admin")


def test_cancel_terminal_refused() -> None:
    state = running()
    done = step(state, decide_outcome(state, "w1", 1, Outcome("succeeded", 0)))
    with pytest.raises(AlreadyTerminal):
        decide_cancel(done, "admin")


def test_failure_with_retries_left_schedules_retry_with_backoff() -> None:
    spec = JobSpec(name="t", executor=ShellExecutor(script="false"), max_retries=2, retry_backoff_s=2.0)
    state = running(spec)
    now = state.updated_at
    event = decide_outcome(state, "w1", 1, Outcome("failed", 1, "exit 1"), now=now)
    assert isinstance(event, RetryScheduled)
    assert event.not_before == now + timedelta(seconds=2.0)
    state = step(state, event)
    assert state.status is JobStatus.PENDING and state.retries == 1 and state.worker_id is None
    assert state.attempts[0].status == "failed"
    # second attempt fails too: backoff doubles
    state = step(state, decide_dispatch(state, "w2"))
    state = step(state, decide_start(state, "w2", 2))
    event2 = decide_outcome(state, "w2", 2, Outcome("timed_out", None, "slow"), now=now)
    assert isinstance(event2, RetryScheduled) and event2.not_before == now + timedelta(seconds=4.0)
    state = step(state, event2)
    state = step(state, decide_dispatch(state, "w1"))
    state = step(state, decide_start(state, "w1", 3))
    final = decide_outcome(state, "w1", 3, Outcome("timed_out", None, "slow"))
    assert isinstance(final, TimedOut)
    assert step(state, final).status is JobStatus.TIMED_OUT


def test_retry_delay_is_capped() -> None:
    spec = JobSpec(name="t", executor=ShellExecutor(script="false"), retry_backoff_s=3000)
    assert retry_delay_s(spec, 10) == 3600.0


def test_outcome_after_cancel_request_is_cancelled() -> None:
    state = running()
    state = step(state, decide_cancel(state, "admin"))
    assert isinstance(decide_outcome(state, "w1", 1, Outcome("failed", 137, "killed")), Cancelled)


def test_outcome_of_stale_attempt_refused() -> None:
    state = running()
    requeued = step(state, decide_requeue(state, "w1", 1, "worker lost"))
    assert requeued.status is JobStatus.PENDING and requeued.requeues == 1
    with pytest.raises(StaleAssignment):
        decide_outcome(requeued, "w1", 1, Outcome("succeeded", 0))


def test_requeue_of_cancel_requested_job_cancels() -> None:
    state = running()
    state = step(state, decide_cancel(state, "admin"))
    assert isinstance(decide_requeue(state, "w1", 1, "worker lost"), Cancelled)


def test_requeue_bound_fails_the_job() -> None:
    state = submitted()
    for n in range(1, 7):
        state = step(state, decide_dispatch(state, f"w{n}"))
        event = decide_requeue(state, f"w{n}", n, "lost")
        state = step(state, event)
        if n <= 5:
            assert isinstance(event, Requeued)
        else:
            assert isinstance(event, Failed) and "lost its worker" in event.error
    assert state.status is JobStatus.FAILED


def test_hold_only_when_reason_changes() -> None:
    state = submitted()
    first = decide_hold(state, "no live worker")
    assert first is not None
    held = step(state, first)
    assert held.pending_reason == "no live worker"
    assert decide_hold(held, "no live worker") is None
    assert decide_hold(held, "no live worker has tags ['gpu']") is not None


def test_worker_view_of_dispatch_decides_like_the_log() -> None:
    spec = JobSpec(name="t", executor=ShellExecutor(script="false"), max_retries=1)
    state = submitted(spec)
    dispatch = decide_dispatch(state, "w1")
    local = state_from_dispatch(dispatch, started_at=dispatch.at)
    real = step(step(state, dispatch), decide_start(step(state, dispatch), "w1", 1))
    outcome = Outcome("failed", 2, "boom")
    a = decide_outcome(local, "w1", 1, outcome, now=dispatch.at)
    b = decide_outcome(real, "w1", 1, outcome, now=dispatch.at)
    assert type(a) is type(b) is RetryScheduled


def test_fold_matches_stepwise() -> None:
    state = submitted()
    d = decide_dispatch(state, "w1")
    s1 = step(state, d)
    st = decide_start(s1, "w1", 1)
    s2 = step(s1, st)
    ok = decide_outcome(s2, "w1", 1, Outcome("succeeded", 0))
    assert isinstance(ok, Succeeded)
    events = [Submitted(domain="prod", actor="test", job_id="j1", spec=SPEC), d, st, ok]
    folded = fold(events)  # type: ignore[arg-type]
    assert folded is not None and folded.status is JobStatus.SUCCEEDED and len(folded.attempts) == 1


def test_a_start_that_landed_counts_for_its_own_run_only() -> None:
    dispatched = step(submitted(), decide_dispatch(submitted(), "w1"))
    start = decide_start(dispatched, "w1", 1, incarnation="run-a")
    assert isinstance(start, Started) and start.incarnation == "run-a"
    state = step(dispatched, start)
    assert state.incarnation == "run-a"
    assert started_by(state, "w1", 1, "run-a")  # our append timed out, but it is there
    assert not started_by(state, "w1", 1, "run-b") and not started_by(state, "w2", 1, "run-a")
    assert not started_by(state, "w1", 2, "run-a") and not started_by(dispatched, "w1", 1, "run-a")
    assert not started_by(running(), "w1", 1, "")  # no incarnation: an older worker proves nothing
    # A new run of w1 is handed the attempt run-a started: it must say it does not run it.
    assert held_by_gone_run(state, "w1", 1, "run-b")
    assert not held_by_gone_run(state, "w1", 1, "run-a") and not held_by_gone_run(dispatched, "w1", 1, "x")
