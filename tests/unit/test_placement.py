"""Placement and failover decisions, with no server."""

from __future__ import annotations

from events.job import JobSpec, PythonExecutor, ShellExecutor
from services.dispatcher.failover import Liveness, silent
from services.dispatcher.placement import WorkerView, choose, eligible, unplaceable


def view(wid: str, tags: set[str] = frozenset(), users: set[str] = frozenset(), load: int = 0, cap: int = 4,
         executors: set[str] = frozenset({"shell", "python"})) -> WorkerView:  # fmt: skip
    return WorkerView(wid, frozenset(tags), frozenset(users), frozenset(executors), cap, load)


def spec(tags: list[str] | None = None, user: str | None = None, python: bool = False) -> JobSpec:
    executor = PythonExecutor(callable="m:f") if python else ShellExecutor(script="true")
    return JobSpec(name="j", executor=executor, tags=tags or [], user=user)


def test_tags_must_be_a_subset() -> None:
    assert eligible(spec(["gpu"]), view("a", {"gpu", "linux"}))
    assert not eligible(spec(["gpu", "arm"]), view("a", {"gpu"}))


def test_allowed_users_restrict_only_when_set() -> None:
    assert eligible(spec(user="bob"), view("a"))
    assert eligible(spec(user="bob"), view("a", users={"bob"}))
    assert not eligible(spec(user="eve"), view("a", users={"bob"}))
    assert not eligible(spec(), view("a", users={"bob"}))


def test_executor_must_be_supported() -> None:
    assert not eligible(spec(python=True), view("a", executors={"shell"}))


def test_least_loaded_relative_to_size() -> None:
    workers = [view("a", load=3, cap=4), view("b", load=2, cap=8), view("c", load=1, cap=2)]
    chosen = choose(spec(), workers)
    assert chosen is not None and chosen.id == "b"


def test_full_workers_are_skipped() -> None:
    assert choose(spec(), [view("a", load=4, cap=4)]) is None


def test_unplaceable_reasons_name_the_problem() -> None:
    assert unplaceable(spec(), []) == "no live worker in this domain"
    assert unplaceable(spec(["gpu"]), [view("a")]) == "no live worker has tags ['gpu']"
    reason = unplaceable(spec(user="eve", python=True), [view("a", users={"bob"}, executors={"shell"})])
    assert reason is not None and "user 'eve'" in reason and "executor 'python'" in reason
    # capacity is not a reason: a busy but matching worker could take it later
    assert unplaceable(spec(), [view("a", load=4, cap=4)]) is None


def test_silent_workers() -> None:
    lives = [
        Liveness("prod", "a", True, 100.0),
        Liveness("prod", "b", True, 95.0),
        Liveness("prod", "c", False, 0.0),
    ]
    assert [w.worker_id for w in silent(lives, now=102.0, ttl_s=6.0)] == ["b"]
