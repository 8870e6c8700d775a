"""The schedule aggregate's pure rules: folding, and what a pass over a due schedule decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from events.base import Conflict, DomainError
from events.job import JobSpec, ShellExecutor
from events.schedule import (
    AnyScheduleEvent,
    CatchupPolicy,
    Created,
    Deleted,
    Fire,
    Fired,
    Missed,
    OverlapPolicy,
    Paused,
    Plan,
    Queued,
    ScheduleSpec,
    ScheduleState,
    Skipped,
    backfill_ticks,
    decide_pause,
    decide_resume,
    evolve_schedule,
    plan_due,
    planned_at,
    tick_job_id,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
JOB = JobSpec(name="j", executor=ShellExecutor(script="true"))


def spec(**kw: Any) -> ScheduleSpec:
    return ScheduleSpec(name="s", job=JOB, **({"interval_s": 60.0} | kw))


def created(**kw: Any) -> ScheduleState:
    state = evolve_schedule(None, Created(domain="d", actor="t", schedule_id="S", spec=spec(**kw), at=T0))
    assert state is not None
    return state


def apply(state: ScheduleState, plan: Plan, at: datetime) -> ScheduleState:
    """Fold what a plan records, as the scheduler would after appending it."""
    for step in plan.steps:
        event: AnyScheduleEvent = step.event if isinstance(step, Fire) else step  # type: ignore[assignment]
        folded = evolve_schedule(state, msgspec.structs.replace(event, at=at))
        assert folded is not None
        state = folded
    return state


def fires(plan: Plan) -> list[tuple[datetime, str]]:
    return [(s.tick, s.event.reason) for s in plan.steps if isinstance(s, Fire)]


def kinds(plan: Plan) -> list[str]:
    return [s.event.type if isinstance(s, Fire) else s.type for s in plan.steps]


def test_nothing_due_before_the_first_tick_and_wake_at_it() -> None:
    plan = plan_due(created(), [], T0 + timedelta(seconds=59))
    assert plan.steps == [] and plan.wake_at == T0 + timedelta(seconds=60)


def test_a_due_tick_fires_a_job_with_a_derived_id_and_moves_the_cursor() -> None:
    state = created()
    now = T0 + timedelta(seconds=60, milliseconds=5)
    plan = plan_due(state, [], now)
    assert fires(plan) == [(T0 + timedelta(seconds=60), "tick")]
    fire = plan.steps[0]
    assert isinstance(fire, Fire) and fire.job_id == tick_job_id("d", "S", T0 + timedelta(seconds=60))
    after = apply(state, plan, now)
    assert after.cursor == T0 + timedelta(seconds=60) and after.fired == 1
    assert plan_due(after, [fire.job_id], now).steps == []  # the same tick never twice
    assert plan.wake_at == T0 + timedelta(seconds=120)


def test_tick_job_ids_differ_by_domain_schedule_and_tick() -> None:
    ids = {tick_job_id(d, s, T0 + timedelta(seconds=k)) for d in "ab" for s in "xy" for k in range(3)}
    assert len(ids) == 12


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (OverlapPolicy.ALLOW, ["fired"]),
        (OverlapPolicy.SKIP, ["skipped"]),
        (OverlapPolicy.QUEUE, ["queued"]),
        (OverlapPolicy.BUFFER_ONE, ["queued"]),
        (OverlapPolicy.CANCEL_OTHER, ["fired"]),
    ],
)
def test_overlap_policies_when_the_previous_run_is_busy(policy: OverlapPolicy, expected: list[str]) -> None:
    state = created(overlap_policy=policy)
    plan = plan_due(state, ["previous"], T0 + timedelta(seconds=61))
    assert kinds(plan) == expected
    assert plan.cancel == (["previous"] if policy is OverlapPolicy.CANCEL_OTHER else [])
    if policy is OverlapPolicy.SKIP:
        step = plan.steps[0]
        assert isinstance(step, Skipped) and "previous" in step.reason


def test_queue_keeps_every_tick_and_releases_them_in_order_when_the_run_ends() -> None:
    state = created(overlap_policy=OverlapPolicy.QUEUE, misfire_grace_s=3600)
    now = T0 + timedelta(seconds=181)
    plan = plan_due(state, ["previous"], now)
    assert kinds(plan) == ["queued", "queued", "queued"]
    state = apply(state, plan, now)
    assert [w.tick for w in state.waiting] == [T0 + timedelta(seconds=60 * k) for k in (1, 2, 3)]
    assert plan_due(state, ["previous"], now).steps == []  # still busy: they wait
    plan = plan_due(state, [], now)
    assert fires(plan) == [(T0 + timedelta(seconds=60), "queued")]  # one; it is now the busy run
    state = apply(state, plan, now)
    assert len(state.waiting) == 2


def test_buffer_one_keeps_one_waiting_and_skips_the_rest() -> None:
    state = created(overlap_policy=OverlapPolicy.BUFFER_ONE, misfire_grace_s=3600)
    now = T0 + timedelta(seconds=181)
    plan = plan_due(state, ["previous"], now)
    assert kinds(plan) == ["queued", "skipped", "skipped"]
    state = apply(state, plan, now)
    assert len(state.waiting) == 1 and state.skipped == 2


def test_catch_up_none_records_missed_ticks_once() -> None:
    state = created(catchup_policy=CatchupPolicy.NONE, misfire_grace_s=30)
    now = T0 + timedelta(minutes=10, seconds=10)  # 10 ticks passed; the newest is 10 s late
    plan = plan_due(state, [], now)
    missed = [s for s in plan.steps if isinstance(s, Missed)]
    assert len(missed) == 1 and missed[0].count == 9
    assert fires(plan) == [(T0 + timedelta(minutes=10), "tick")]  # within the grace: just late
    state = apply(state, plan, now)
    assert state.missed == 9 and plan_due(state, [], now).steps == []


def test_catch_up_fire_immediately_is_bounded_by_window_and_count() -> None:
    state = created(catchup_policy=CatchupPolicy.FIRE_IMMEDIATELY, overlap_policy=OverlapPolicy.ALLOW,
                    misfire_grace_s=0, catchup_window_s=300, max_catchup=3)  # fmt: skip
    now = T0 + timedelta(minutes=10, seconds=1)
    plan = plan_due(state, [], now)
    assert [t for t, _ in fires(plan)] == [T0 + timedelta(minutes=m) for m in (8, 9, 10)]
    assert {r for _, r in fires(plan)} == {"catchup"}
    missed = [s for s in plan.steps if isinstance(s, Missed)]
    assert missed[0].count == 7 and missed[0].last == T0 + timedelta(minutes=7)


def test_catch_up_spread_queues_ticks_over_the_window() -> None:
    state = created(catchup_policy=CatchupPolicy.SPREAD, overlap_policy=OverlapPolicy.ALLOW,
                    misfire_grace_s=0, catchup_window_s=180, max_catchup=3)  # fmt: skip
    now = T0 + timedelta(minutes=3, seconds=1)
    plan = plan_due(state, [], now)
    queued = [s for s in plan.steps if isinstance(s, Queued)]
    assert [q.not_before for q in queued] == [now, now + timedelta(seconds=60), now + timedelta(seconds=120)]
    assert fires(plan) == [(T0 + timedelta(minutes=1), "catchup")]  # the first slot is now
    state = apply(state, plan, now)
    assert plan.wake_at == T0 + timedelta(minutes=4)  # the next regular tick comes before the next slot
    later = plan_due(state, [], now + timedelta(seconds=60))
    assert fires(later) == [(T0 + timedelta(minutes=2), "catchup")]


def test_pause_holds_everything_and_resume_goes_on_from_its_time() -> None:
    state = created()
    paused = evolve_schedule(state, decide_pause(state, "t"))
    assert paused is not None and paused.status == "paused"
    assert plan_due(paused, [], T0 + timedelta(hours=1)).steps == []
    with pytest.raises(Conflict):
        decide_pause(paused, "t")
    resume = decide_resume(paused, "t")
    resumed = evolve_schedule(
        paused, msgspec.structs.replace(resume, at=T0 + timedelta(minutes=30, seconds=5))
    )
    assert resumed is not None and resumed.cursor == T0 + timedelta(minutes=30, seconds=5)
    plan = plan_due(resumed, [], T0 + timedelta(minutes=31))
    assert fires(plan) == [(T0 + timedelta(minutes=31), "tick")]


def test_deleted_schedules_ignore_everything_after() -> None:
    state = created()
    gone = evolve_schedule(state, Deleted(domain="d", actor="t", schedule_id="S"))
    assert gone is not None and gone.status == "deleted"
    assert evolve_schedule(gone, Paused(domain="d", actor="t", schedule_id="S")) == gone
    assert plan_due(gone, [], T0 + timedelta(hours=1)).steps == []


def test_end_at_ends_the_schedule() -> None:
    state = created(end_at=T0 + timedelta(seconds=150))
    plan = plan_due(state, [], T0 + timedelta(hours=1))
    assert [t for t, _ in fires(plan)] == []  # both ticks are later than the grace: missed
    state = apply(state, plan, T0 + timedelta(hours=1))
    assert state.missed == 2 and state.status == "ended" and plan.wake_at is None


def test_jitter_is_deterministic_and_delays_the_fire() -> None:
    state = created(jitter_s=30)
    tick = T0 + timedelta(seconds=60)
    at = planned_at(state, tick)
    assert tick <= at < tick + timedelta(seconds=30) and at == planned_at(state, tick)
    assert plan_due(state, [], at - timedelta(microseconds=1)).steps == []
    assert fires(plan_due(state, [], at)) == [(tick, "tick")]


def test_backfill_range_rules() -> None:
    state = created()
    ticks = backfill_ticks(state, T0, T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    assert ticks == [T0 + timedelta(minutes=m) for m in range(1, 6)]
    with pytest.raises(DomainError, match="future"):
        backfill_ticks(state, T0, T0 + timedelta(hours=2), T0 + timedelta(hours=1))
    with pytest.raises(DomainError, match="before"):
        backfill_ticks(state, T0 + timedelta(minutes=5), T0, T0 + timedelta(hours=1))
    with pytest.raises(DomainError, match="more than"):
        backfill_ticks(state, T0, T0 + timedelta(days=1), T0 + timedelta(days=2))


def test_fired_records_survive_a_json_round_trip() -> None:
    from events.codec import decode_event, encode

    event = Fired(domain="d", actor="t", schedule_id="S", tick=T0, job_id="x", reason="tick", planned_at=T0)
    assert decode_event("ev.d.schedule.S.fired", encode(event)) == event


@pytest.mark.parametrize("cron", ["0 0 * * SUN-fri#1", "0 0 30 2 *", "0 0 * * L"])
def test_a_stored_trigger_this_version_refuses_never_fires_and_says_why(cron: str) -> None:
    """A schedule stored by an earlier version whose cron the parser now refuses folds, plans
    nothing and reads as invalid, instead of raising where the scheduler or a replay runs."""
    state = created(cron=cron, interval_s=None)
    assert state.status == "invalid"
    assert state.problem is not None and state.problem.startswith("cron: ")
    assert state.next_tick() is None
    plan = plan_due(state, [], T0 + timedelta(days=400))
    assert plan.steps == [] and plan.wake_at is None
    healthy = created(cron="0 * * * *", interval_s=None)
    assert healthy.problem is None and healthy.status == "active"
    assert plan_due(healthy, [], T0 + timedelta(hours=1)).steps
