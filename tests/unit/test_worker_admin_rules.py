"""An operator's drain, disable and enable of a worker: the pure rules, the fold, the codec, the
dispatcher's view of it, and the worker's start state. No server."""

from __future__ import annotations

import time

import msgspec
import pytest

from events import subjects
from events.base import Conflict
from events.codec import decode_event, encode
from events.job import JobSpec, ShellExecutor
from events.worker import (
    CameOnline,
    Registered,
    StateChanged,
    Stopped,
    WentOffline,
    WorkerState,
    decide_admin_state,
    evolve_worker,
)
from services.dispatcher.placement import WorkerView, unplaceable
from services.dispatcher.state import DispatchState
from services.worker.settings import SettingsError, WorkerSettings


def registered(**kw: object) -> Registered:
    return Registered(domain="prod", actor="worker:w1", worker_id="w1", executors=["shell"], **kw)  # type: ignore[arg-type]


def worker(**kw: object) -> WorkerState:
    state = evolve_worker(None, registered(**kw))
    assert state is not None
    return state


def test_a_new_worker_is_active() -> None:
    assert worker().admin_state == "active"
    assert worker(admin_state="disabled").admin_state == "disabled"


@pytest.mark.parametrize(
    ("before", "target"),
    [("active", "draining"), ("active", "disabled"), ("draining", "disabled"), ("draining", "active"),
     ("disabled", "active")],
)  # fmt: skip
def test_each_allowed_change_is_one_event_naming_its_cause(before: str, target: str) -> None:
    state = worker(admin_state=before)
    event = decide_admin_state(state, target, "admin", cause="ev-last", reason="why")  # type: ignore[arg-type]
    assert isinstance(event, StateChanged)
    assert (event.state, event.reason, event.actor) == (target, "why", "admin")
    assert (event.worker_id, event.domain, event.correlation_id, event.causation_id) == (
        "w1",
        "prod",
        "w1",
        "ev-last",
    )
    after = evolve_worker(state, event)
    assert after is not None and after.admin_state == target and after.status is state.status


@pytest.mark.parametrize("same", ["active", "draining", "disabled"])
def test_asking_for_the_state_it_is_in_is_a_no_op(same: str) -> None:
    assert decide_admin_state(worker(admin_state=same), same, "admin") is None  # type: ignore[arg-type]


def test_draining_a_disabled_worker_is_refused_and_says_what_to_do() -> None:
    with pytest.raises(Conflict, match=r"worker w1 is disabled.*enable it first"):
        decide_admin_state(worker(admin_state="disabled"), "draining", "admin")


def test_an_unknown_state_is_refused() -> None:
    with pytest.raises(Conflict, match="must be one of active, draining, disabled"):
        decide_admin_state(worker(), "paused", "admin")  # type: ignore[arg-type]


def test_liveness_changes_keep_the_admin_state_and_a_re_registration_keeps_it_unless_told() -> None:
    state = worker(admin_state="disabled")
    for event in (
        WentOffline(domain="prod", actor="dispatcher", worker_id="w1", reason="silent"),
        CameOnline(domain="prod", actor="dispatcher", worker_id="w1"),
        Stopped(domain="prod", actor="worker:w1", worker_id="w1"),
    ):
        state = evolve_worker(state, event)  # type: ignore[assignment]
        assert state is not None and state.admin_state == "disabled"
    again = evolve_worker(state, registered())
    assert again is not None and again.admin_state == "disabled"
    told = evolve_worker(state, registered(admin_state="active"))
    assert told is not None and told.admin_state == "active"
    # Any liveness status may be changed: a stopped worker keeps it for when it comes back.
    assert decide_admin_state(state, "active", "admin") is not None


def test_codec_round_trip_and_older_registrations_still_decode() -> None:
    event = decide_admin_state(worker(), "draining", "admin", cause="x")
    assert event is not None
    subject = subjects.worker("prod", "w1", event.type)
    assert subject == "ev.prod.worker.w1.state_changed"
    assert decode_event(subject, encode(event)) == event
    old = msgspec.json.encode(
        {"type": "registered", "domain": "prod", "actor": "worker:w1", "worker_id": "w1", "id": "e1", "v": 1,
         "at": "2026-01-01T00:00:00Z"}
    )  # fmt: skip
    decoded = decode_event("ev.prod.worker.w1.registered", old)
    assert isinstance(decoded, Registered) and decoded.admin_state is None
    bad = msgspec.json.encode({**msgspec.to_builtins(event), "state": "paused"})
    with pytest.raises(ValueError):
        decode_event(subject, bad)


def view(wid: str, tags: set[str] = frozenset()) -> WorkerView:
    return WorkerView(wid, frozenset(tags), frozenset(), frozenset({"shell"}), 4, 0)


def test_the_held_reason_names_matching_workers_an_operator_took_out() -> None:
    spec = JobSpec(name="j", executor=ShellExecutor(script="true"), tags=["gpu"])
    assert unplaceable(spec, [], [(view("g1", {"gpu"}), "disabled")]) == (
        "no live worker in this domain; matching but taking no new jobs: worker g1 (disabled)"
    )
    withheld = [
        (view("g1", {"gpu"}), "disabled"),
        (view("g2", {"gpu"}), "draining"),
        (view("c2"), "disabled"),
    ]
    assert unplaceable(spec, [view("c1")], withheld) == (
        "no live worker has tags ['gpu']; "
        "matching but taking no new jobs: workers g1 (disabled), g2 (draining)"
    )
    assert unplaceable(spec, [], [(view("c2"), "disabled")]) == "no live worker in this domain"
    assert unplaceable(spec, [view("g1", {"gpu"})], [(view("g2", {"gpu"}), "disabled")]) is None


def test_the_dispatcher_places_nothing_on_a_drained_or_disabled_worker_until_enabled() -> None:
    st = DispatchState()
    reg = registered()
    st.apply(1, reg)
    now = time.monotonic()
    st.workers[("prod", "w1")].last_beat = now
    assert [v.id for v in st.live_views(now, 20)["prod"]] == ["w1"]
    seq = 1
    for target, live in (("draining", False), ("disabled", False), ("active", True)):
        st.fleet_changed = False
        state = st.workers[("prod", "w1")].state
        event = decide_admin_state(state, target, "admin", cause=st.workers[("prod", "w1")].last_event_id)  # type: ignore[arg-type]
        assert event is not None
        seq += 1
        st.apply(seq, event)
        assert st.fleet_changed  # held jobs are looked at again
        assert ("prod" in st.live_views(now, 20)) is live
        withheld = st.withheld_views(now, 20).get("prod", [])
        assert [(v.id, s) for v, s in withheld] == ([] if live else [("w1", target)])
    # A worker shutting down (its beats say draining) stays so through an operator's change.
    st.workers[("prod", "w1")].draining = True
    event = decide_admin_state(st.workers[("prod", "w1")].state, "disabled", "admin")
    assert event is not None
    st.apply(seq + 1, event)
    assert st.workers[("prod", "w1")].draining


def test_start_state_setting_is_checked() -> None:
    assert (
        WorkerSettings(nats_url="nats://x", worker_id="w1", start_state="draining").start_state == "draining"
    )
    with pytest.raises(SettingsError, match="WORKER_STATE must be one of"):
        WorkerSettings(nats_url="nats://x", worker_id="w1", start_state="off")  # type: ignore[arg-type]
