"""Concurrency limits: the pure rules, the counts folded from the log, and dispatch rounds
run against an in-memory log (no server)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from events.base import Conflict, Event, utcnow
from events.job import (
    Cancelled,
    Dispatched,
    Held,
    JobEvent,
    JobSpec,
    JobStatus,
    Requeued,
    RetryScheduled,
    ShellExecutor,
    Started,
    Submitted,
    Succeeded,
)
from events.store import Append, Appended
from events.worker import Registered
from services.api.models import JobIn
from services.dispatcher.limits import (
    DOMAIN,
    KEY,
    NAME,
    WithPlanned,
    blocking,
    counted,
    limit_reason,
    limits,
)
from services.dispatcher.service import Dispatcher
from services.dispatcher.state import DispatchState

D = "prod"


def spec(name: str = "j", **kw: Any) -> JobSpec:
    return JobSpec(name=name, executor=ShellExecutor(script="true"), **kw)


# ---- pure rules ---------------------------------------------------------------------


def test_no_limits_means_no_reason() -> None:
    assert limits(spec(), D, 0) == []
    assert limit_reason(spec(), D, Counter({(DOMAIN, D, ""): 10_000}), 0) is None


def test_key_limit_defaults_to_one_and_names_the_key() -> None:
    s = spec(concurrency_key="db-migrate")
    assert limit_reason(s, D, Counter(), 0) is None
    counts = Counter({(KEY, D, "db-migrate"): 1})
    assert limit_reason(s, D, counts, 0) == "concurrency limit: 1 of 1 jobs with key 'db-migrate' running"
    s2 = spec(concurrency_key="db-migrate", concurrency_limit=2)
    assert limit_reason(s2, D, counts, 0) is None
    counts[(KEY, D, "db-migrate")] = 2
    assert limit_reason(s2, D, counts, 0) == "concurrency limit: 2 of 2 jobs with key 'db-migrate' running"


def test_keys_and_names_are_per_domain() -> None:
    s = spec("report", concurrency_key="k", name_limit=1)
    counts = Counter({(KEY, "staging", "k"): 5, (NAME, "staging", "report"): 5})
    assert limit_reason(s, D, counts, 1) is None


def test_name_limit_and_domain_limit_reasons() -> None:
    s = spec("report", name_limit=3)
    counts = Counter({(NAME, D, "report"): 3, (DOMAIN, D, ""): 3})
    assert limit_reason(s, D, counts, 0) == "concurrency limit: 3 of 3 jobs named 'report' running"
    assert limit_reason(spec("other"), D, counts, 50) is None
    counts[(DOMAIN, D, "")] = 50
    assert limit_reason(spec("other"), D, counts, 50) == "domain limit: 50 of 50 jobs running in 'prod'"


def test_most_specific_limit_is_reported_first() -> None:
    s = spec("report", concurrency_key="k", name_limit=1)
    full = Counter({(KEY, D, "k"): 1, (NAME, D, "report"): 1, (DOMAIN, D, ""): 1})
    block = blocking(s, D, full, 1)
    assert block is not None and block.limit == (KEY, D, "k")
    del full[(KEY, D, "k")]
    block = blocking(s, D, full, 1)
    assert block is not None and block.limit == (NAME, D, "report")
    del full[(NAME, D, "report")]
    block = blocking(s, D, full, 1)
    assert block is not None and block.limit == (DOMAIN, D, "")


def test_every_job_counts_toward_its_domain_name_and_key() -> None:
    assert counted(spec("a"), D) == ((DOMAIN, D, ""), (NAME, D, "a"))
    assert counted(spec("a", concurrency_key="k"), D) == ((DOMAIN, D, ""), (NAME, D, "a"), (KEY, D, "k"))


def test_planned_dispatches_add_to_folded_counts() -> None:
    folded: Counter[tuple[str, str, str]] = Counter({(KEY, D, "k"): 1})
    planned: Counter[tuple[str, str, str]] = Counter()
    counts = WithPlanned(folded, planned)
    s = spec(concurrency_key="k", concurrency_limit=2)
    assert limit_reason(s, D, counts, 0) is None
    planned[(KEY, D, "k")] += 1
    assert limit_reason(s, D, counts, 0) is not None


def test_limits_below_one_or_without_key_do_not_block_forever() -> None:
    # Only reachable by appending events past the API; the dispatcher stays sane.
    assert limits(spec(concurrency_limit=3), D, 0) == []
    assert limits(spec(concurrency_key="k", concurrency_limit=0), D, 0) == [((KEY, D, "k"), 1)]


# ---- the spec and the API model -----------------------------------------------------


def test_old_specs_decode_and_reencode_identically() -> None:
    old = b'{"name":"x","executor":{"type":"shell","script":"true","shell":"sh"},"priority":3}'
    decoded = msgspec.json.decode(old, type=JobSpec)
    assert decoded.concurrency_key is None and decoded.name_limit is None
    assert msgspec.json.encode(decoded) == old
    new = spec(concurrency_key="k", concurrency_limit=2, name_limit=1)
    assert msgspec.json.decode(msgspec.json.encode(new), type=JobSpec) == new


def job_in(**kw: Any) -> JobIn:
    return JobIn.model_validate({"name": "x", "executor": {"type": "shell", "script": "true"}, **kw})


def test_job_in_carries_the_limits_to_the_spec() -> None:
    s = job_in(concurrency_key="db:migrate/eu-1", concurrency_limit=2, name_limit=5).to_spec()
    assert (s.concurrency_key, s.concurrency_limit, s.name_limit) == ("db:migrate/eu-1", 2, 5)
    assert job_in(concurrency_key="k").to_spec().concurrency_limit is None


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"concurrency_limit": 2}, "concurrency_limit", "needs a concurrency_key"),
        ({"concurrency_key": None, "concurrency_limit": 2}, "concurrency_limit", "needs a concurrency_key"),
        ({"concurrency_key": "has space"}, "concurrency_key", "letters, digits"),
        ({"concurrency_key": ""}, "concurrency_key", "letters, digits"),
        ({"concurrency_key": "k" * 129}, "concurrency_key", "1-128"),
        ({"concurrency_key": "k", "concurrency_limit": 0}, "concurrency_limit", "greater than"),
        ({"concurrency_key": "k", "concurrency_limit": 100_001}, "concurrency_limit", "less than"),
        ({"name_limit": 0}, "name_limit", "greater than"),
        ({"name_limit": "many"}, "name_limit", "integer"),
    ],
)
def test_job_in_refuses_bad_limits_naming_the_field(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        job_in(**body)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)], errors
    assert message in errors[0]["msg"]


# ---- counts folded from the log -----------------------------------------------------


class Log:
    """An in-memory event log with the store's fencing: an append must name the job's last seq."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self.seq = 0
        self.last: dict[str, int] = {}
        self.events: list[Event] = []
        self.refuse: set[str] = set()  # job ids whose next append is refused

    def _land(self, event: Event) -> int:
        self.seq += 1
        if isinstance(event, JobEvent):
            self.last[event.job_id] = self.seq
        self.events.append(event)
        return self.seq

    async def append_many(
        self, items: Sequence[Append], deadline_s: float | None = None
    ) -> list[Appended | BaseException]:
        out: list[Appended | BaseException] = []
        for item in items:
            ev = item.event
            if isinstance(ev, JobEvent):
                if ev.job_id in self.refuse:
                    self.refuse.discard(ev.job_id)
                    out.append(Conflict("refused for the test"))
                    continue
                if item.expected is not None and self.last.get(ev.job_id, 0) != item.expected:
                    out.append(Conflict("wrong last sequence"))
                    continue
            out.append(Appended(self._land(ev), False))
        return out

    def add(self, event: Event) -> None:
        """An event appended by someone else (API, worker), seen by the dispatcher."""
        self.d.state.apply(self._land(event), event)

    # ---- shorthands -------------------------------------------------------------------

    def submit(self, job_id: str, s: JobSpec) -> str:
        self.add(Submitted(domain=D, actor="test", job_id=job_id, spec=s))
        return job_id

    def finish(self, job_id: str) -> None:
        st = self.d.state.jobs[(D, job_id)].state
        assert st.worker_id is not None
        if st.status is JobStatus.DISPATCHED:
            self.add(Started(domain=D, actor="w", job_id=job_id, worker_id=st.worker_id, attempt=st.attempt))
        self.add(Succeeded(domain=D, actor="w", job_id=job_id, worker_id=st.worker_id, attempt=st.attempt))

    def retry(self, job_id: str) -> None:
        st = self.d.state.jobs[(D, job_id)].state
        assert st.worker_id is not None
        if st.status is JobStatus.DISPATCHED:
            self.add(Started(domain=D, actor="w", job_id=job_id, worker_id=st.worker_id, attempt=st.attempt))
        self.add(
            RetryScheduled(
                domain=D, actor="w", job_id=job_id, worker_id=st.worker_id, attempt=st.attempt,
                outcome="failed", not_before=utcnow(),
            )
        )  # fmt: skip

    def cancel(self, job_id: str) -> None:
        self.add(Cancelled(domain=D, actor="test", job_id=job_id))

    def status(self, job_id: str) -> JobStatus | None:
        entry = self.d.state.jobs.get((D, job_id))
        return entry.state.status if entry else None

    def active(self) -> list[str]:
        return sorted(j for (_, j), e in self.d.state.jobs.items() if e.state.status is not JobStatus.PENDING)

    def reason(self, job_id: str) -> str | None:
        return self.d.state.jobs[(D, job_id)].state.pending_reason

    def holds(self) -> list[Held]:
        return [e for e in self.events if isinstance(e, Held)]


def dispatcher(domain_limit: int = 0, workers: int = 2, slots: int = 4) -> tuple[Dispatcher, Log]:
    d = Dispatcher("nats://unused", max_running_per_domain=domain_limit)
    log = Log(d)
    d._store = log  # type: ignore[assignment]
    for i in range(workers):
        log.add(
            Registered(domain=D, actor="w", worker_id=f"w{i}", max_concurrency=slots, executors=["shell"])
        )
    return d, log


async def round_(d: Dispatcher) -> None:
    await d._place(time.monotonic(), utcnow())


def test_counts_follow_the_fold() -> None:
    st = DispatchState()
    s = spec("r", concurrency_key="k")
    key, name, dom = (KEY, D, "k"), (NAME, D, "r"), (DOMAIN, D, "")
    seq = iter(range(1, 100))

    def apply(ev: Event) -> None:
        st.apply(next(seq), ev)

    apply(Submitted(domain=D, actor="t", job_id="a", spec=s))
    assert st.active == Counter()
    apply(Dispatched(domain=D, actor="t", job_id="a", worker_id="w", attempt=1, spec=s))
    assert st.active == Counter({key: 1, name: 1, dom: 1})
    apply(Started(domain=D, actor="t", job_id="a", worker_id="w", attempt=1))
    assert st.active[key] == 1
    apply(Requeued(domain=D, actor="t", job_id="a", worker_id="w", attempt=1, reason="lost"))
    assert st.active == Counter()
    apply(Dispatched(domain=D, actor="t", job_id="a", worker_id="w", attempt=2, spec=s))
    apply(Started(domain=D, actor="t", job_id="a", worker_id="w", attempt=2))
    apply(
        RetryScheduled(
            domain=D, actor="t", job_id="a", worker_id="w", attempt=2, outcome="failed",
            not_before=utcnow(),
        )
    )  # fmt: skip
    assert st.active == Counter()
    apply(Dispatched(domain=D, actor="t", job_id="a", worker_id="w", attempt=3, spec=s))
    apply(Succeeded(domain=D, actor="t", job_id="a", worker_id="w", attempt=3))
    assert st.active == Counter() and not st.jobs  # zero counts leave no entries behind


# ---- dispatch rounds ----------------------------------------------------------------


async def test_key_limit_counts_dispatches_of_the_same_round_and_parks_the_rest() -> None:
    d, log = dispatcher()
    ids = [log.submit(f"j{i}", spec("s", concurrency_key="k", concurrency_limit=2)) for i in range(6)]
    await round_(d)
    assert log.active() == ["j0", "j1"]  # 8 free slots, but only 2 of the key
    for job_id in ids[2:]:
        assert log.status(job_id) is JobStatus.PENDING
        assert log.reason(job_id) == "concurrency limit: 2 of 2 jobs with key 'k' running"
    assert d.state.parked_count() == 4 and not d.state.ready
    holds = len(log.holds())
    await round_(d)  # nothing freed: nothing looked at again, no new hold
    assert log.active() == ["j0", "j1"] and len(log.holds()) == holds == 4
    log.finish("j1")
    await round_(d)
    assert log.active() == ["j0", "j2"]  # exactly one released, the oldest
    log.finish("j0")
    log.finish("j2")
    await round_(d)
    assert log.active() == ["j3", "j4"]
    assert log.reason("j5") == "concurrency limit: 2 of 2 jobs with key 'k' running"
    dispatched = [e for e in log.events if isinstance(e, Dispatched) and e.job_id == "j3"]
    assert dispatched and log.d.state.jobs[(D, "j3")].state.pending_reason is None


async def test_released_jobs_keep_priority_then_fifo_order() -> None:
    d, log = dispatcher()
    log.submit("run", spec("s", concurrency_key="k"))
    await round_(d)
    for job_id, prio in [("low", -1), ("mid1", 0), ("high", 5), ("mid2", 0)]:
        log.submit(job_id, spec("s", concurrency_key="k", priority=prio))
    await round_(d)
    order = []
    current = "run"
    for _ in range(4):
        log.finish(current)
        await round_(d)
        (current,) = log.active()
        order.append(current)
    assert order == ["high", "mid1", "mid2", "low"]


async def test_name_limit_counts_every_job_of_the_name() -> None:
    d, log = dispatcher()
    log.submit("free", spec("report"))  # no limit of its own, but it counts
    log.submit("limited", spec("report", name_limit=1))
    log.submit("other", spec("other", name_limit=1))
    await round_(d)
    assert log.active() == ["free", "other"]
    assert log.reason("limited") == "concurrency limit: 1 of 1 jobs named 'report' running"
    log.finish("free")
    await round_(d)
    assert log.active() == ["limited", "other"]


async def test_domain_limit() -> None:
    d, log = dispatcher(domain_limit=3)
    for i in range(5):
        log.submit(f"j{i}", spec())
    await round_(d)
    assert log.active() == ["j0", "j1", "j2"]
    assert log.reason("j4") == "domain limit: 3 of 3 jobs running in 'prod'"
    log.finish("j1")
    await round_(d)
    assert log.active() == ["j0", "j2", "j3"]


async def test_a_released_job_blocked_elsewhere_passes_the_slot_on() -> None:
    d, log = dispatcher()
    log.submit("x", spec("x", concurrency_key="k"))
    log.submit("y", spec("n"))
    await round_(d)
    log.submit("a", spec("n", concurrency_key="k", name_limit=1))  # waits for k, then for n
    log.submit("b", spec("m", concurrency_key="k"))
    await round_(d)
    assert log.active() == ["x", "y"]
    log.finish("x")
    await round_(d)
    assert log.active() == ["b", "y"]
    assert log.reason("a") == "concurrency limit: 1 of 1 jobs named 'n' running"
    log.finish("y")
    log.finish("b")
    await round_(d)
    assert log.active() == ["a"]


async def test_a_cancelled_released_job_passes_the_slot_on() -> None:
    d, log = dispatcher()
    for job_id in ("x", "a", "b"):
        log.submit(job_id, spec(concurrency_key="k"))
    await round_(d)
    log.finish("x")  # releases a into the ready queue...
    log.cancel("a")  # ...which is cancelled before the next round
    await round_(d)
    assert log.active() == ["b"]


async def test_a_refused_dispatch_gives_back_the_slot_it_planned() -> None:
    d, log = dispatcher()
    log.submit("a", spec(concurrency_key="k"))
    log.submit("b", spec(concurrency_key="k"))
    log.refuse.add("a")  # its dispatch loses a race; b was parked behind it in the same round
    await round_(d)
    assert log.active() == []
    await round_(d)
    assert log.active() == ["a"]
    log.finish("a")
    await round_(d)
    assert log.active() == ["b"]


async def test_a_job_parked_by_the_domain_keeps_the_key_slot_it_was_released_into() -> None:
    d, log = dispatcher(domain_limit=2)
    log.submit("k1", spec(concurrency_key="k"))
    log.submit("o1", spec())
    await round_(d)
    log.submit("k2", spec(concurrency_key="k"))
    log.submit("k3", spec(concurrency_key="k"))
    log.submit("k4", spec(concurrency_key="k"))
    log.submit("o2", spec())
    await round_(d)
    assert log.reason("k2") == "concurrency limit: 1 of 1 jobs with key 'k' running"
    assert log.reason("o2") == "domain limit: 2 of 2 jobs running in 'prod'"
    log.finish("k1")  # frees k (k2 released) and the domain (o2 released)...
    log.submit("urgent", spec(priority=5))  # ...but this one takes the domain slot first
    await round_(d)
    assert log.active() == ["o1", "urgent"]
    assert log.reason("k2") == "domain limit: 2 of 2 jobs running in 'prod'"
    # k2 waits on the domain holding k's free slot; k3 and k4 are not moved around.
    assert d.state.parked_at[(D, "k3")] == (KEY, D, "k") == d.state.parked_at[(D, "k4")]
    log.cancel("k2")  # its k slot goes to k3, which then waits on the domain too
    await round_(d)
    assert d.state.parked_at[(D, "k3")] == (DOMAIN, D, "")
    assert d.state.parked_at[(D, "k4")] == (KEY, D, "k")
    log.finish("o1")
    await round_(d)
    assert log.active() == ["k3", "urgent"]  # FIFO on the domain: k3 was submitted before o2
    log.finish("urgent")
    await round_(d)
    assert log.active() == ["k3", "o2"]
    assert log.reason("k4") == "concurrency limit: 1 of 1 jobs with key 'k' running"


@pytest.mark.parametrize("seed", range(12))
async def test_random_workloads_never_exceed_a_limit_and_always_drain(seed: int) -> None:
    rng = random.Random(seed)
    domain_limit = rng.choice([0, 3, 5])
    d, log = dispatcher(domain_limit=domain_limit, workers=2, slots=3)
    key_limits = {"a": 1, "b": 2, "c": 3}
    name_limits = {"n1": 1, "n2": 2, "n3": None}
    n = 0
    cancelled: set[str] = set()

    def submit() -> None:
        nonlocal n
        n += 1
        key = rng.choice([None, "a", "b", "c"])
        name = rng.choice(list(name_limits))
        s = spec(
            name,
            priority=rng.choice([0, 0, 1]),
            concurrency_key=key,
            concurrency_limit=key_limits[key] if key else None,
            name_limit=name_limits[name],
        )
        log.submit(f"j{n}", s)

    def check() -> None:
        active = [e.state for e in d.state.jobs.values() if e.state.status is not JobStatus.PENDING]
        by: Counter[tuple[str, str, str]] = Counter()
        for state in active:
            by.update(counted(state.spec, D))
        assert by == d.state.active
        for state in active:
            for limit, allowed in limits(state.spec, D, domain_limit):
                assert by[limit] <= allowed, (limit, by[limit], allowed)

    for _ in range(60):
        for _ in range(rng.randint(0, 4)):
            submit()
        pending = [j for (_, j), e in d.state.jobs.items() if e.state.status is JobStatus.PENDING]
        if pending and rng.random() < 0.2:
            log.refuse.add(rng.choice(pending))  # a dispatch that loses a race
        await round_(d)
        check()
        for job_id in log.active():
            roll = rng.random()
            if roll < 0.3:
                log.finish(job_id)
            elif roll < 0.4:
                log.retry(job_id)
        for job_id in pending:
            if rng.random() < 0.05 and log.status(job_id) is JobStatus.PENDING:
                log.cancel(job_id)
                cancelled.add(job_id)
    log.refuse.clear()
    for _ in range(500):
        if not d.state.jobs:
            break
        await round_(d)
        check()
        assert log.active(), "pending jobs but nothing dispatched: a freed slot was lost"
        for job_id in log.active():
            log.finish(job_id)
    assert not d.state.jobs
    assert not d.state.active and not d.state.parked_at and not d.state.releases
    finished = {e.job_id for e in log.events if isinstance(e, Succeeded)}
    assert finished | cancelled == {f"j{i}" for i in range(1, n + 1)}
