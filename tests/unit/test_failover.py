"""The failover planner and the dispatcher's view of what workers report, with no server."""

from __future__ import annotations

from events.job import Dispatched, JobSpec, ShellExecutor, Started, Submitted
from events.worker import Heartbeat, Registered
from services.dispatcher.failover import (
    UNREPORTED_DISPATCHED_GRACE_S,
    UNREPORTED_RUNNING_GRACE_S,
    Held,
    Run,
    held_by_gone_runs,
    unreported,
)
from services.dispatcher.state import DispatchState

SPEC = JobSpec(name="j", executor=ShellExecutor(script="true"))


def held(job: str, running: bool, incarnation: str = "", seq: int = 10, attempt: int = 1) -> Held:
    return Held("prod", job, "w1", attempt, running, incarnation, seq)


def test_what_an_earlier_run_of_the_worker_held_goes_back_at_once() -> None:
    runs = {("prod", "w1"): Run("new", registered_seq=20)}
    plan = held_by_gone_runs(
        [
            held("old-running", True, "old"),
            held("new-running", True, "new"),
            held("dispatched-before", False, seq=15),
            held("dispatched-after", False, seq=25),
        ],
        runs,
    )
    assert [(h.job_id, "restarted" in why) for h, why in plan] == [
        ("old-running", True),
        ("dispatched-before", True),
    ]


def test_workers_without_an_incarnation_or_not_active_are_left_to_the_ttl() -> None:
    assert held_by_gone_runs([held("a", True, "old")], {("prod", "w1"): Run("", 20)}) == []
    assert held_by_gone_runs([held("a", True, "old")], {}) == []


def test_attempts_left_out_of_the_beats_go_back_after_their_grace() -> None:
    running, dispatched = held("r", True, "x"), held("d", False)
    since = {("prod", "r"): (1, 100.0), ("prod", "d"): (1, 100.0)}
    assert unreported([running, dispatched], since, now=100.0 + UNREPORTED_RUNNING_GRACE_S - 1) == []
    plan = unreported([running, dispatched], since, now=100.0 + UNREPORTED_RUNNING_GRACE_S + 1)
    assert [h.job_id for h, _ in plan] == ["r"]
    assert "does not report running attempt 1" in plan[0][1]
    plan = unreported([running, dispatched], since, now=100.0 + UNREPORTED_DISPATCHED_GRACE_S + 1)
    assert [h.job_id for h, _ in plan] == ["r", "d"]
    # Missing since an earlier attempt says nothing about this one.
    assert unreported([held("r", True, "x", attempt=2)], since, now=1e9) == []


def test_beats_mark_and_clear_what_they_leave_out() -> None:
    st = DispatchState()
    st.apply(1, Registered(domain="prod", actor="w", worker_id="w1", max_concurrency=2, incarnation="i1"))
    st.apply(2, Submitted(domain="prod", actor="t", job_id="j1", spec=SPEC))
    st.apply(3, Dispatched(domain="prod", actor="d", job_id="j1", worker_id="w1", attempt=1, spec=SPEC))
    st.apply(4, Started(domain="prod", actor="w", job_id="j1", worker_id="w1", attempt=1, incarnation="i1"))
    assert st.assigned[("prod", "w1")] == {"j1"}
    st.beat(Heartbeat(worker_id="w1", domain="prod", seq=1, running=[]), now=50.0)
    assert st.missing_since[("prod", "j1")] == (1, 50.0)
    st.beat(Heartbeat(worker_id="w1", domain="prod", seq=2, running=[]), now=52.0)
    assert st.missing_since[("prod", "j1")] == (1, 50.0)  # since the first beat that left it out
    st.beat(Heartbeat(worker_id="w1", domain="prod", seq=3, running=["j1"]), now=54.0)
    assert ("prod", "j1") not in st.missing_since
    [h] = st.holdings()
    assert (h.job_id, h.running, h.incarnation, h.seq) == ("j1", True, "i1", 4)
    # The worker id registers from a new process: its earlier run's attempt is gone.
    st.apply(5, Registered(domain="prod", actor="w", worker_id="w1", max_concurrency=2, incarnation="i2"))
    assert st.runs()[("prod", "w1")] == Run("i2", 5)
    assert [h.job_id for h, _ in held_by_gone_runs(st.holdings(), st.runs())] == ["j1"]


def test_only_an_active_worker_goes_offline_and_only_an_offline_one_comes_back() -> None:
    from events.worker import WorkerStatus, decide_offline, decide_online, evolve_worker

    w = evolve_worker(None, Registered(domain="prod", actor="w", worker_id="w1", incarnation="i1"))
    assert w is not None and decide_online(w) is None
    gone = decide_offline(w, "no heartbeat for 21s")
    assert gone is not None and gone.reason == "no heartbeat for 21s"
    offline = evolve_worker(w, gone)
    assert offline is not None and offline.status is WorkerStatus.OFFLINE
    assert decide_offline(offline, "again") is None and decide_online(offline) is not None


def test_a_start_that_comes_late_restarts_the_grace() -> None:
    """Left out of every beat while dispatched (its start kept failing), then started: the grace
    for a running attempt counts from the start, not from the first beat that left it out."""
    st = DispatchState()
    st.apply(1, Registered(domain="prod", actor="w", worker_id="w1", max_concurrency=2, incarnation="i1"))
    st.apply(2, Submitted(domain="prod", actor="t", job_id="j1", spec=SPEC))
    st.apply(3, Dispatched(domain="prod", actor="d", job_id="j1", worker_id="w1", attempt=1, spec=SPEC))
    st.beat(Heartbeat(worker_id="w1", domain="prod", seq=1, running=[]), now=100.0)
    st.apply(4, Started(domain="prod", actor="w", job_id="j1", worker_id="w1", attempt=1, incarnation="i1"))
    assert ("prod", "j1") not in st.missing_since
    assert unreported(st.holdings(), st.missing_since, now=130.0) == []
