"""The audit's checks on hand-built logs: each planted violation is caught with its exact witness
sequences, and a realistic clean log (retries, requeues, cancels, schedules) gives none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from events import subjects
from events.base import Event
from events.codec import encode
from events.job import (
    MAX_REQUEUES,
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
    retry_delay_s,
)
from events.schedule import (
    Created,
    Deleted,
    Fired,
    Missed,
    Paused,
    Resumed,
    ScheduleSpec,
    Skipped,
    tick_job_id,
)
from events.store import job_subject
from events.worker import CameOnline, Registered, Stopped, WentOffline
from services.audit.checks import CHECKS, Auditor, Report

D = "prod"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = JobSpec(name="task", executor=ShellExecutor(script="true"))


def subject_of(event: Event) -> str:
    kind = type(event).__module__.rsplit(".", 1)[-1]
    if kind == "job":
        return job_subject(event)  # type: ignore[arg-type]
    if kind == "worker":
        return subjects.worker(event.domain, event.worker_id, event.type)  # type: ignore[attr-defined]
    return subjects.schedule(event.domain, event.schedule_id, event.type)  # type: ignore[attr-defined]


class Log:
    """A log being built: `add` returns the stream sequence the event gets."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Event | bytes]] = []

    def add(self, event: Event | bytes, subject: str | None = None) -> int:
        assert subject is not None or isinstance(event, Event)
        self.items.append((subject or subject_of(event), event))  # type: ignore[arg-type]
        return len(self.items)

    def audit(self, raw: bool = True, skip: frozenset[int] = frozenset(), **kw: Any) -> Report:
        auditor = Auditor(**kw)
        for seq, (subject, event) in enumerate(self.items, 1):
            if seq in skip:
                continue
            payload = encode(event) if raw and isinstance(event, Event) else event
            auditor.apply(seq, subject, payload)
        return auditor.finish(len(self.items))

    # ---- builders ---------------------------------------------------------------------

    def worker(self, wid: str = "w1", **kw: Any) -> int:
        kw.setdefault("executors", ["shell", "python"])
        kw.setdefault("max_concurrency", 4)
        return self.add(Registered(domain=D, actor=f"worker:{wid}", worker_id=wid, **kw))

    def submit(self, job: str, spec: JobSpec = SPEC, **kw: Any) -> int:
        return self.add(Submitted(domain=D, actor="api", job_id=job, correlation_id=job, spec=spec, **kw))

    def dispatch(self, job: str, attempt: int = 1, wid: str = "w1", spec: JobSpec = SPEC, **kw: Any) -> int:
        return self.add(
            Dispatched(
                domain=D, actor="dispatcher", job_id=job, worker_id=wid, attempt=attempt, spec=spec, **kw
            )
        )

    def start(self, job: str, attempt: int = 1, wid: str = "w1") -> int:
        return self.add(Started(domain=D, actor=f"worker:{wid}", job_id=job, worker_id=wid, attempt=attempt))

    def succeed(self, job: str, attempt: int = 1, wid: str = "w1") -> int:
        return self.add(
            Succeeded(domain=D, actor=f"worker:{wid}", job_id=job, worker_id=wid, attempt=attempt)
        )

    def retry(
        self, job: str, attempt: int = 1, wid: str = "w1", spec: JobSpec = SPEC, wait_s: float | None = None
    ) -> int:
        """A retry whose backoff (the spec's, for retry number `attempt`, unless `wait_s`) is over
        by now, so that a dispatch built next is not early."""
        wait = retry_delay_s(spec, attempt - 1) if wait_s is None else wait_s
        at = datetime.now(UTC) - timedelta(seconds=wait + 0.5)
        return self.add(
            RetryScheduled(domain=D, actor=f"worker:{wid}", job_id=job, worker_id=wid, attempt=attempt,
                           outcome="failed", exit_code=1, at=at, not_before=at + timedelta(seconds=wait))
        )  # fmt: skip

    def requeue(self, job: str, attempt: int = 1, wid: str = "w1") -> int:
        return self.add(
            Requeued(domain=D, actor="dispatcher", job_id=job, worker_id=wid, attempt=attempt, reason="lost")
        )

    def run(self, job: str, spec: JobSpec = SPEC, wid: str = "w1") -> list[int]:
        return [
            self.submit(job, spec),
            self.dispatch(job, 1, wid, spec),
            self.start(job, 1, wid),
            self.succeed(job, 1, wid),
        ]

    def sched(self, sid: str = "s1", **kw: Any) -> int:
        spec = ScheduleSpec(name=sid, job=SPEC, interval_s=60, **kw)
        return self.add(Created(domain=D, actor="api", schedule_id=sid, spec=spec))

    def fire(self, tick: datetime, sid: str = "s1", reason: str = "tick") -> int:
        job_id = tick_job_id(D, sid, tick)
        return self.add(
            Fired(domain=D, actor="scheduler", schedule_id=sid, tick=tick, job_id=job_id, reason=reason)
        )


def only(report: Report) -> tuple[str, tuple[int, ...]]:
    assert len(report.violations) == 1, report.violations
    v = report.violations[0]
    return v.check, v.seqs


# ---- a clean log ----------------------------------------------------------------------


def clean_log() -> Log:
    log = Log()
    log.worker("w1", tags=["gpu", "linux"], max_concurrency=2)
    log.worker("w2", tags=["linux"], max_concurrency=2)
    log.worker("w3", allowed_users=["ann"], max_concurrency=1)
    log.run("a", JobSpec(name="a", executor=ShellExecutor(script="true"), tags=["gpu"]))
    # Retried once (max_retries 1), then failed for good.
    retrying = JobSpec(name="b", executor=ShellExecutor(script="false"), max_retries=1)
    log.submit("b", retrying)
    log.dispatch("b", 1, "w1", retrying)
    log.start("b")
    log.retry("b")
    log.add(Held(domain=D, actor="dispatcher", job_id="b", reason="no live worker in this domain"))
    log.dispatch("b", 2, "w2", retrying, retries=1)
    log.start("b", 2, "w2")
    log.add(Failed(domain=D, actor="worker:w2", job_id="b", worker_id="w2", attempt=2, exit_code=1))
    # Lost with its worker, run elsewhere; the worker comes back.
    log.submit("c")
    log.dispatch("c")
    log.start("c")
    log.add(WentOffline(domain=D, actor="dispatcher", worker_id="w1", reason="no heartbeat"))
    log.requeue("c")
    log.dispatch("c", 2, "w2", requeues=1)
    log.start("c", 2, "w2")
    log.succeed("c", 2, "w2")
    log.add(CameOnline(domain=D, actor="dispatcher", worker_id="w1"))
    # Cancelled while pending, before start, and while running.
    log.submit("d")
    log.add(Cancelled(domain=D, actor="api", job_id="d", reason="cancelled while pending"))
    log.submit("e")
    log.dispatch("e")
    log.add(CancelRequested(domain=D, actor="api", job_id="e"))
    log.add(
        Cancelled(domain=D, actor="worker:w1", job_id="e", worker_id="w1", attempt=1, reason="before start")
    )
    log.submit("f")
    cause = log.items[log.dispatch("f") - 1][1]
    assert isinstance(cause, Event)
    log.add(
        Started(domain=D, actor="worker:w1", job_id="f", worker_id="w1", attempt=1, causation_id=cause.id)
    )
    log.add(CancelRequested(domain=D, actor="api", job_id="f"))
    log.add(Cancelled(domain=D, actor="worker:w1", job_id="f", worker_id="w1", attempt=1))
    # Lost MAX_REQUEUES times, then failed by the requeue rule.
    log.submit("g")
    for n in range(1, MAX_REQUEUES + 1):
        log.dispatch("g", n, requeues=n - 1)
        log.requeue("g", n)
    log.dispatch("g", MAX_REQUEUES + 1, requeues=MAX_REQUEUES)
    log.add(Failed(domain=D, actor="dispatcher", job_id="g", worker_id="w1", attempt=MAX_REQUEUES + 1,
                   error="lost its worker 6 times"))  # fmt: skip
    # One at a time under a concurrency key; a user's job on the worker that allows them.
    keyed = JobSpec(name="k", executor=ShellExecutor(script="true"), concurrency_key="db")
    log.run("k1", keyed)
    log.run("k2", keyed)
    log.run("u", JobSpec(name="u", executor=ShellExecutor(script="true"), user="ann"), wid="w3")
    # A schedule: a tick (its job first, naming the record that follows as its cause), a skip,
    # run-now while paused, missed ticks later backfilled, then deleted.
    log.sched()
    t1, t2, t3, t4 = (T0 + timedelta(minutes=m) for m in (1, 2, 3, 4))
    fired = Fired(domain=D, actor="scheduler", schedule_id="s1", tick=t1, job_id=tick_job_id(D, "s1", t1))
    log.submit(fired.job_id, schedule_id="s1", tick=t1, causation_id=fired.id)
    log.add(fired)
    log.add(Skipped(domain=D, actor="scheduler", schedule_id="s1", tick=t2, kind="overlap"))
    log.add(Paused(domain=D, actor="api", schedule_id="s1"))
    log.add(Fired(domain=D, actor="api", schedule_id="s1", tick=T0 + timedelta(hours=1), job_id="rn",
                  reason="run_now"))  # fmt: skip
    log.add(Resumed(domain=D, actor="api", schedule_id="s1"))
    log.add(Missed(domain=D, actor="scheduler", schedule_id="s1", first=t3, last=t4, count=2))
    log.fire(t3, reason="backfill")
    log.add(Deleted(domain=D, actor="api", schedule_id="s1"))
    log.add(Stopped(domain=D, actor="worker:w2", worker_id="w2"))
    return log


@pytest.mark.parametrize("raw", [True, False])
def test_a_realistic_clean_log_has_no_violations(raw: bool) -> None:
    report = clean_log().audit(raw=raw)
    assert report.violations == []
    assert report.gaps == []
    assert report.exit_code == 0
    assert report.events == len(clean_log().items)
    assert set(report.checked) == set(CHECKS)


def test_a_clean_log_read_from_the_middle_reports_nothing_it_cannot_know() -> None:
    log = clean_log()
    for since in (5, 17, 30):
        auditor = Auditor(start=since, partial=True)
        for seq, (subject, event) in enumerate(log.items, 1):
            if seq >= since:
                auditor.apply(seq, subject, event)
        assert auditor.finish(len(log.items)).violations == [], since


def test_a_domain_filter_checks_only_that_domain() -> None:
    log = Log()
    log.add(Submitted(domain="other", actor="api", job_id="x", spec=SPEC))
    log.add(Started(domain="other", actor="w", job_id="x", worker_id="w9", attempt=3))
    seqs = [log.worker(), *log.run("a")]
    assert log.audit(domain=D).violations == []
    assert log.audit(domain=D).events == len(seqs)
    assert only(log.audit(domain="other"))[0] == "job.started-matches"


# ---- one planted violation per check -----------------------------------------------------


def test_gap() -> None:
    log = Log()
    log.worker()
    log.run("a")
    report = log.audit(skip=frozenset({3}))
    assert report.gaps == [(3, 3)] and report.exit_code == 3
    assert log.audit(skip=frozenset({5})).gaps == [(5, 5)]  # a missing tail
    auditor = Auditor(start=4, partial=True)  # --since skips it
    for seq, (subject, event) in list(enumerate(log.items, 1))[3:]:
        auditor.apply(seq, subject, event)
    assert auditor.finish(5).exit_code == 0


def test_undecodable_and_mismatched_events() -> None:
    log = Log()
    log.worker()
    bad = log.add(b'{"type": "submitted", "nonsense', subjects.job(D, "a", "submitted"))
    assert only(log.audit()) == ("event.decodes", (bad,))
    log = Log()
    log.worker()
    other = log.add(
        Submitted(domain=D, actor="api", job_id="b", spec=SPEC), subjects.job(D, "a", "submitted")
    )
    assert only(log.audit()) == ("event.decodes", (other,))
    log = Log()
    log.worker()
    log.submit("a")
    moved = log.add(
        Dispatched(domain=D, actor="d", job_id="a", worker_id="w1", attempt=1, spec=SPEC),
        subjects.job(D, "a", "dispatched", "w2"),
    )
    assert only(log.audit()) == ("event.decodes", (moved,))


def test_duplicate_event_id() -> None:
    log = Log()
    first = log.worker()
    again = log.add(Submitted(domain=D, actor="api", job_id="a", spec=SPEC, id=log.items[0][1].id))  # type: ignore[union-attr]
    assert only(log.audit()) == ("event.unique-id", (first, again))


def test_causation_names_no_event_or_a_later_one() -> None:
    log = Log()
    log.worker()
    bad = log.add(Submitted(domain=D, actor="api", job_id="a", spec=SPEC, causation_id="nothing"))
    assert only(log.audit()) == ("event.causation", (bad,))
    log = Log()
    later = Registered(domain=D, actor="w", worker_id="w1", executors=["shell"])
    effect = log.add(Submitted(domain=D, actor="api", job_id="a", spec=SPEC, causation_id=later.id))
    cause = log.add(later)
    assert only(log.audit()) == ("event.causation", (effect, cause))


def test_job_without_submitted_first_or_submitted_twice() -> None:
    log = Log()
    log.worker()
    first = log.dispatch("a")
    assert only(log.audit()) == ("job.submitted-first", (first,))
    log = Log()
    log.worker()
    one = log.submit("a")
    two = log.submit("a")
    assert only(log.audit()) == ("job.submitted-first", (one, two))


def test_event_after_terminal() -> None:
    log = Log()
    log.worker()
    *_, done = log.run("a")
    after = log.add(Cancelled(domain=D, actor="api", job_id="a"))
    assert only(log.audit()) == ("job.after-terminal", (done, after))


def test_attempts_not_numbered_from_one() -> None:
    log = Log()
    log.worker()
    sub = log.submit("a")
    d = log.dispatch("a", attempt=2)
    assert only(log.audit()) == ("job.attempt-numbering", (sub, d))


def test_dispatch_while_attempt_open() -> None:
    log = Log()
    log.worker()
    log.submit("a")
    d1 = log.dispatch("a")
    d2 = log.dispatch("a", attempt=2)
    assert only(log.audit()) == ("job.dispatch-while-open", (d1, d2))


def test_dispatch_with_another_spec() -> None:
    log = Log()
    log.worker()
    sub = log.submit("a")
    d = log.dispatch("a", spec=JobSpec(name="task", executor=ShellExecutor(script="rm -rf /")))
    assert only(log.audit()) == ("job.dispatch-matches", (sub, d))


def test_started_by_another_worker() -> None:
    log = Log()
    log.worker()
    log.worker("w2")
    log.submit("a")
    d = log.dispatch("a")
    s = log.start("a", wid="w2")
    assert only(log.audit()) == ("job.started-matches", (d, s))


def test_started_twice() -> None:
    log = Log()
    log.worker()
    log.submit("a")
    log.dispatch("a")
    s1 = log.start("a")
    s2 = log.start("a")
    assert only(log.audit()) == ("job.started-once", (s1, s2))


def test_outcome_for_another_attempt_or_without_start() -> None:
    log = Log()
    log.worker()
    log.submit("a")
    d = log.dispatch("a")
    log.start("a")
    out = log.succeed("a", attempt=2)
    assert only(log.audit()) == ("job.outcome-matches", (d, out))
    log = Log()
    log.worker()
    log.submit("a")
    d = log.dispatch("a")
    out = log.succeed("a")
    assert only(log.audit()) == ("job.outcome-matches", (d, out))


def test_retries_beyond_max_retries() -> None:
    log = Log()
    log.worker()
    sub = log.submit("a")  # max_retries 0
    log.dispatch("a")
    log.start("a")
    r = log.retry("a")
    assert only(log.audit()) == ("job.retries-within-limit", (sub, r))


def test_a_retry_that_does_not_wait_its_backoff() -> None:
    spec = JobSpec(name="task", executor=ShellExecutor(script="true"), max_retries=2, retry_backoff_s=30)
    log = Log()
    log.worker()
    log.submit("a", spec)
    log.dispatch("a", spec=spec)
    log.start("a")
    short = log.retry("a", spec=spec, wait_s=3.0)  # its backoff is 30 s
    assert only(log.audit()) == ("job.retry-backoff", (short,))
    log = Log()
    log.worker()
    log.submit("a", spec)
    log.dispatch("a", spec=spec)
    log.start("a")
    at = datetime.now(UTC)
    retry = log.add(
        RetryScheduled(domain=D, actor="worker:w1", job_id="a", worker_id="w1", attempt=1, outcome="failed",
                       at=at, not_before=at + timedelta(seconds=30))
    )  # fmt: skip
    early = log.dispatch("a", 2, spec=spec, retries=1)  # now: 30 s too soon
    assert only(log.audit()) == ("job.retry-backoff", (retry, early))


def test_requeues_beyond_the_cap() -> None:
    log = Log()
    log.worker()
    log.submit("a")
    requeues = []
    for n in range(1, MAX_REQUEUES + 2):
        log.dispatch("a", n, requeues=n - 1)
        requeues.append(log.requeue("a", n))
    assert only(log.audit()) == ("job.requeues-within-limit", tuple(requeues))


def test_dispatch_to_an_unregistered_worker() -> None:
    log = Log()
    log.submit("a")
    d = log.dispatch("a", wid="ghost")
    assert only(log.audit()) == ("worker.dispatch-registered", (d,))


def test_dispatch_to_a_stopped_worker() -> None:
    log = Log()
    log.worker()
    stop = log.add(Stopped(domain=D, actor="worker:w1", worker_id="w1"))
    log.submit("a")
    d = log.dispatch("a")
    assert only(log.audit()) == ("worker.dispatch-live", (stop, d))


def test_dispatch_to_a_worker_that_does_not_fit() -> None:
    spec = JobSpec(name="task", executor=ShellExecutor(script="true"), tags=["gpu"])
    log = Log()
    reg = log.worker(tags=["linux"])
    log.submit("a", spec)
    d = log.dispatch("a", spec=spec)
    assert only(log.audit()) == ("worker.dispatch-fits", (reg, d))


def test_more_open_attempts_than_max_concurrency() -> None:
    log = Log()
    reg = log.worker(max_concurrency=1)
    log.submit("a")
    log.submit("b")
    d1 = log.dispatch("a")
    d2 = log.dispatch("b")
    assert only(log.audit()) == ("worker.max-concurrency", (reg, d1, d2))


@pytest.mark.parametrize(
    ("limit", "check"),
    [({"concurrency_key": "db"}, "limits.concurrency-key"), ({"name_limit": 1}, "limits.name-limit")],
)
def test_concurrency_limits(limit: dict[str, Any], check: str) -> None:
    spec = JobSpec(name="task", executor=ShellExecutor(script="true"), **limit)
    log = Log()
    log.worker()
    log.submit("a", spec)
    log.submit("b", spec)
    d1 = log.dispatch("a", spec=spec)
    d2 = log.dispatch("b", spec=spec)
    assert only(log.audit()) == (check, (d1, d2))


def test_schedule_event_before_created() -> None:
    log = Log()
    f = log.fire(T0)
    assert only(log.audit()) == ("schedule.created-first", (f,))


def test_schedule_event_after_deleted() -> None:
    log = Log()
    log.sched()
    deleted = log.add(Deleted(domain=D, actor="api", schedule_id="s1"))
    f = log.fire(T0)
    assert only(log.audit()) == ("schedule.after-delete", (deleted, f))


def test_two_records_for_one_tick() -> None:
    log = Log()
    log.sched()
    f = log.fire(T0)
    s = log.add(Skipped(domain=D, actor="scheduler", schedule_id="s1", tick=T0, kind="overlap"))
    assert only(log.audit()) == ("schedule.one-record-per-tick", (f, s))
    log = Log()
    log.sched()
    f = log.fire(T0 + timedelta(minutes=2))
    later = T0 + timedelta(minutes=5)
    m = log.add(Missed(domain=D, actor="scheduler", schedule_id="s1", first=T0, last=later, count=5))
    assert only(log.audit()) == ("schedule.one-record-per-tick", (f, m))


def test_two_jobs_for_one_tick() -> None:
    log = Log()
    log.sched()
    j1 = log.submit("x1", schedule_id="s1", tick=T0)
    j2 = log.submit("x2", schedule_id="s1", tick=T0)
    assert only(log.audit()) == ("schedule.one-job-per-tick", (j1, j2))


def test_fire_while_paused() -> None:
    log = Log()
    log.sched()
    p = log.add(Paused(domain=D, actor="api", schedule_id="s1"))
    f = log.fire(T0)
    assert only(log.audit()) == ("schedule.fire-while-paused", (p, f))


def test_every_check_has_a_planted_violation_here() -> None:
    """Keeps this file in step with CHECKS: a new check needs its own planted-violation test."""
    with open(__file__) as fh:
        source = fh.read()
    missing = [name for name in CHECKS if name != "log.contiguous" and f'"{name}"' not in source]
    assert missing == []


def test_report_json_shape() -> None:
    log = Log()
    log.submit("a")
    d = log.dispatch("a", wid="ghost")
    data = msgspec.json.decode(msgspec.json.encode(log.audit().to_dict()))
    assert data["events"] == 2
    assert data["violations"] == [
        {"check": "worker.dispatch-registered", "aggregate": "job prod/a",
         "message": "dispatched to ghost, not registered in domain prod", "seqs": [d]}
    ]  # fmt: skip
    assert "job.after-terminal" in data["checked"]


def test_the_nats_url_comes_from_the_flag_or_a_running_up(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from services.audit.command import nats_url

    monkeypatch.delenv("NATS_SERVICE_PASSWORD", raising=False)
    assert nats_url("nats://u:p@127.0.0.1:5000", tmp_path) == "nats://u:p@127.0.0.1:5000"
    with pytest.raises(typer.Exit):
        nats_url(None, tmp_path)  # no up.lock: says what to pass, exit 3
    (tmp_path / "up.lock").write_text('{"pid": 1, "nats_url": "nats://127.0.0.1:5001"}\n')
    assert nats_url(None, tmp_path) == "nats://127.0.0.1:5001"
    monkeypatch.setenv("NATS_SERVICE_PASSWORD", "secret")
    assert nats_url(None, tmp_path) == "nats://jobstream:secret@127.0.0.1:5001"
    assert nats_url("nats://u:p@127.0.0.1:5000", tmp_path) == "nats://u:p@127.0.0.1:5000"


def test_the_reader_parses_deliveries_statuses_and_pings_split_anywhere() -> None:
    from services.audit.reader import _parse

    ack = b"$JS.ACK.EVENTS.c1.1.%d.1.1700000000000000000.0"
    frames = (
        b"MSG ev.p.job.a.submitted 1 " + ack % 7 + b" 5\r\nhello\r\n"
        b"PING\r\n"
        b"HMSG ev.p.job.a.started 1 " + ack % 8 + b" 12 17\r\nNATS/1.0\r\n\r\nworld\r\n"
        b"HMSG _INBOX.x 1 28 28\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n"
        b"MSG ev.p.job.a.x 1 $JS.ACK.dom.hash.EVENTS.c1.1.9.1.1700000000000000000.0.tok 2\r\nhi\r\n"
    )
    whole = _parse(frames)
    assert whole[0] == [(7, "ev.p.job.a.submitted", b"hello"), (8, "ev.p.job.a.started", b"world"),
                        (9, "ev.p.job.a.x", b"hi")]  # fmt: skip
    assert whole[1:] == (b"", ["408 Request Timeout"], 1)
    for cut in range(1, len(frames)):
        first, rest, statuses, pings = _parse(frames[:cut])
        second, left, more, pongs = _parse(rest + frames[cut:])
        assert first + second == whole[0] and left == b"" and statuses + more == whole[2], cut
        assert pings + pongs == 1
