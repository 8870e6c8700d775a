"""The audit as a pure fold: feed it the log in stream order, get the violations it proves.

`Auditor.apply(seq, subject, event)` takes one stored message (an `Event`, or its raw JSON,
which it decodes itself) and `finish()` returns the report; nothing here touches a broker,
so the checks are tested on hand-built logs and can run incrementally. Each violation names
its check, the aggregate, a one-line explanation and the smallest set of stream sequences
that proves it (the witness).

Per event the fold keeps only what a later check needs: a finished job shrinks to the
sequence of its terminal event, so memory grows with the number of event ids (for the
causation check) and of live aggregates, not with the payloads.

Not checked, because the log cannot show it or a field is missing: the dispatcher's
`--max-running-per-domain` (a flag, not in the log), heartbeat timing (HEARTBEATS keeps
minutes), and that schedule ticks are fire times of their spec. Retry backoff is checked
with BACKOFF_TOLERANCE_S of clock skew between the processes that wrote the times.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from events.base import Event
from events.codec import DecodeError, decode_event
from events.ids import is_token
from events.job import (
    MAX_REQUEUES,
    AnyJobEvent,
    Cancelled,
    Dispatched,
    Failed,
    JobSpec,
    Requeued,
    RetryScheduled,
    Started,
    Submitted,
    Succeeded,
    TimedOut,
    retry_delay_s,
)
from events.schedule import AnyScheduleEvent, Created, Deleted, Fired, Missed, Paused, Resumed, Skipped
from events.upcast import is_current
from events.worker import AnyWorkerEvent, CameOnline, Registered, Stopped, WentOffline
from services.dispatcher.limits import KEY, NAME, LimitKey, limits
from services.dispatcher.placement import WorkerView, eligible

CHECKS: dict[str, str] = {
    "log.contiguous": "stream sequences run without a gap from the first one read",
    "event.decodes": "every message decodes and its payload matches its subject (domain, aggregate, id, "
    "type, worker)",
    "event.unique-id": "no two events share an id",
    "event.causation": "a causation_id names an earlier event (a scheduled job's, the tick's record "
    "appended right after it)",
    "job.submitted-first": "a job has exactly one submitted, and it comes first",
    "job.after-terminal": "a job has at most one terminal event and nothing after it",
    "job.attempt-numbering": "attempts are dispatched as 1, 2, 3, ...",
    "job.dispatch-while-open": "attempt n+1 is not dispatched before attempt n closed",
    "job.dispatch-matches": "a dispatch carries the submitted spec and the job's retry and requeue counts",
    "job.started-matches": "started answers the open dispatch (same worker, same attempt)",
    "job.started-once": "an attempt starts at most once",
    "job.outcome-matches": "outcomes, retries and requeues close the open attempt (same worker and "
    "attempt; a success, time-out or retry only after started)",
    "job.retries-within-limit": "retries stay within the spec's max_retries",
    "job.retry-backoff": "a retry waits its backoff (retry_backoff_s * 2^n): its not_before says so, "
    "and the next attempt is not dispatched before it",
    "job.requeues-within-limit": f"requeues stay within MAX_REQUEUES ({MAX_REQUEUES})",
    "worker.dispatch-registered": "each dispatch goes to a worker registered in the job's domain",
    "worker.dispatch-live": "no dispatch to a worker that is offline or stopped",
    "worker.dispatch-fits": "the worker's tags, allowed users and executors fit the job (placement.eligible)",
    "worker.max-concurrency": "open attempts per worker stay within its max_concurrency",
    "limits.concurrency-key": "open jobs per concurrency_key stay within the job's concurrency_limit",
    "limits.name-limit": "open jobs per name stay within the job's name_limit",
    "schedule.created-first": "a schedule's first event is created, and it is created once",
    "schedule.after-delete": "nothing follows a schedule's deleted",
    "schedule.one-record-per-tick": "at most one fired/skipped/missed record per (schedule, tick)",
    "schedule.one-job-per-tick": "at most one job and one fire per (schedule, tick)",
    "schedule.fire-while-paused": "no tick, catch-up or queued fire while the schedule is paused",
}

# Times in events come from the clocks of different processes (hosts): this much skew is allowed.
BACKOFF_TOLERANCE_S = 1.0

_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "job": msgspec.json.Decoder(AnyJobEvent),
    "worker": msgspec.json.Decoder(AnyWorkerEvent),
    "schedule": msgspec.json.Decoder(AnyScheduleEvent),
}
_id_fields = {"job": "job_id", "worker": "worker_id", "schedule": "schedule_id"}
_CLOSES = (Succeeded, Failed, TimedOut, Cancelled, RetryScheduled, Requeued)
_TERMINAL = (Succeeded, Failed, TimedOut, Cancelled)
_NEEDS_START = (Succeeded, TimedOut, RetryScheduled)
_REGULAR_FIRES = frozenset({"tick", "catchup", "queued"})


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    aggregate: str
    message: str
    seqs: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "aggregate": self.aggregate,
            "message": self.message,
            "seqs": list(self.seqs),
        }


@dataclass
class Report:
    events: int
    violations: list[Violation]
    checked: list[str]
    gaps: list[tuple[int, int]]
    first_seq: int
    last_seq: int

    @property
    def exit_code(self) -> int:
        """0 clean, 1 violations, 3 gapped (a gap hides what the checks would need)."""
        if self.gaps:
            return 3
        return 1 if self.violations else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "gaps": [list(g) for g in self.gaps],
            "violations": [v.to_dict() for v in self.violations],
            "checked": self.checked,
        }


class _Job:
    __slots__ = (
        "agg",
        "attempt",
        "counted",
        "last_dispatch",
        "not_before",
        "open_seq",
        "open_worker",
        "requeue_seqs",
        "requeues",
        "retries",
        "retry_seqs",
        "spec",
        "started",
        "submitted",
    )

    def __init__(self, agg: str, spec: JobSpec | None, submitted: int) -> None:
        self.agg = agg
        self.spec = spec
        self.submitted = submitted
        self.attempt = 0
        self.last_dispatch = 0
        self.open_seq = 0  # sequence of the open attempt's dispatch; 0: none open
        self.open_worker: tuple[str, str] | None = None
        self.started = 0
        self.retries = 0
        self.requeues = 0
        self.retry_seqs: list[int] = []
        self.not_before: datetime | None = None  # of the last retry, until the next dispatch
        self.requeue_seqs: list[int] = []
        self.counted: tuple[LimitKey, ...] = ()


class _Worker:
    __slots__ = ("open", "registered", "status", "status_seq", "view")

    def __init__(self) -> None:
        self.view: WorkerView | None = None
        self.registered = 0
        self.status = "active"
        self.status_seq = 0
        self.open: dict[tuple[str, str], int] = {}  # job key -> dispatch seq


class _Schedule:
    __slots__ = ("agg", "created", "deleted", "fires", "missed", "paused", "records")

    def __init__(self, agg: str, created: int) -> None:
        self.agg = agg
        self.created = created
        self.paused = 0
        self.deleted = 0
        self.records: dict[datetime, int] = {}  # regular records (fired, skipped) by tick
        self.fires: dict[datetime, int] = {}  # every fire but run_now, by tick
        self.missed: list[tuple[datetime, datetime, int]] = []


_UNKNOWN = _Job("", None, 0)  # a job whose start lies before the audited range (--since)


@dataclass
class Auditor:
    """`domain`: check only that domain's events (gaps are still seen over the whole stream).
    `start`: the first sequence to expect; `partial`: the log before `start` is not read, so
    aggregates whose beginning is missing are skipped, not reported."""

    domain: str | None = None
    start: int = 1
    partial: bool = False
    violations: list[Violation] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    events: int = 0
    first_seq: int = 0
    last_seq: int = 0

    def __post_init__(self) -> None:
        self._next = self.start
        self._ids: dict[str, int] = {}
        self._waiting: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # cause -> (seq, agg, job)
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._done: dict[tuple[str, str], int] = {}  # finished job -> terminal seq
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._schedules: dict[tuple[str, str], _Schedule] = {}
        self._tick_jobs: dict[tuple[str, str, datetime], tuple[int, str]] = {}
        self._open_by_limit: dict[LimitKey, dict[tuple[str, str], int]] = defaultdict(dict)

    def _flag(self, check: str, aggregate: str, message: str, *seqs: int) -> None:
        self.violations.append(Violation(check, aggregate, message, tuple(sorted(set(seqs)))))

    # ---- the fold -------------------------------------------------------------------

    def apply(self, seq: int, subject: str, event: Event | bytes) -> None:
        """Fold one stored message; `event` may be raw JSON (decoded here, only if in the domain)."""
        if seq != self._next:
            if seq > self._next:
                self.gaps.append((self._next, seq - 1))
            else:
                self.gaps.append((seq, seq))  # out of order or repeated: the read is not the log
                return
        self._next = seq + 1
        if not self.first_seq:
            self.first_seq = seq
        self.last_seq = seq
        parts = subject.split(".")
        if self.domain is not None and (len(parts) < 2 or parts[1] != self.domain):
            return
        self.events += 1
        if isinstance(event, bytes):
            decoded = self._decode(seq, subject, parts, event)
            if decoded is None:
                return
            event = decoded
        elif (problem := _mismatch(parts, event)) is not None:
            self._flag("event.decodes", _agg(parts), f"{subject}: {problem}", seq)
            return
        ev_id = event.id
        seen = self._ids.get(ev_id)
        if seen is not None:
            self._flag("event.unique-id", _agg(parts), f"event id {ev_id} was used before", seen, seq)
        else:
            self._ids[ev_id] = seq
        waiting = self._waiting.pop(ev_id, None) if self._waiting else None
        if waiting is not None:
            self._late_cause(seq, event, waiting)
        cause = event.causation_id
        if cause is not None and cause not in self._ids:
            self._waiting[cause].append((seq, _agg(parts), getattr(event, "job_id", "")))
        aggregate = parts[2] if len(parts) > 2 else ""
        if aggregate == "job":
            self._job(seq, parts, event)  # type: ignore[arg-type]
        elif aggregate == "worker":
            self._worker(seq, parts, event)  # type: ignore[arg-type]
        elif aggregate == "schedule":
            self._schedule(seq, parts, event)  # type: ignore[arg-type]

    def finish(self, last_seq: int | None = None) -> Report:
        """The report; `last_seq`: the stream's last sequence when reading began (a missing tail is a gap)."""
        if last_seq is not None and last_seq >= self._next:
            self.gaps.append((self._next, last_seq))
        if not self.partial:
            for cause, waiting in self._waiting.items():
                for seq, agg, _ in waiting:
                    self._flag("event.causation", agg, f"causation_id {cause} names no event in the log", seq)
        self._waiting.clear()
        return Report(
            events=self.events,
            violations=list(self.violations),
            checked=list(CHECKS),
            gaps=list(self.gaps),
            first_seq=self.first_seq,
            last_seq=self.last_seq,
        )

    def _decode(self, seq: int, subject: str, parts: list[str], data: bytes) -> Event | None:
        decoder = _decoders.get(parts[2]) if len(parts) in (5, 6) and parts[0] == "ev" else None
        try:
            if decoder is None:
                return decode_event(subject, data)  # other aggregates, and malformed subjects
            try:
                event: Event = decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return decode_event(subject, data)  # maybe an older version: upcast (events/upcast.py)
            if not is_current(parts[2], event.type, event.v):
                return decode_event(subject, data)
        except (msgspec.DecodeError, msgspec.ValidationError, DecodeError) as exc:
            self._flag("event.decodes", _agg(parts), f"{subject}: {exc}", seq)
            return None
        problem = _mismatch(parts, event)
        if problem:
            self._flag("event.decodes", _agg(parts), f"{subject}: {problem}", seq)
            return None
        return event

    def _late_cause(self, seq: int, event: Event, waiting: list[tuple[int, str, str]]) -> None:
        for effect, agg, job_id in waiting:
            # The scheduler appends a tick's job before the tick's `fired` (so the store refuses a
            # second job), and the job names that record as its cause: the one expected forward link.
            if isinstance(event, Fired) and job_id and event.job_id == job_id:
                continue
            self._flag("event.causation", agg, f"causation_id {event.id} names a later event", effect, seq)

    # ---- jobs -----------------------------------------------------------------------

    def _job(self, seq: int, parts: list[str], ev: AnyJobEvent) -> None:
        key = (parts[1], parts[3])
        job = self._jobs.get(key)
        if job is None:
            terminal = self._done.get(key)
            if terminal is not None:
                what = (
                    "submitted again" if isinstance(ev, Submitted) else f"{ev.type} after its terminal event"
                )
                self._flag("job.after-terminal", _agg(parts), f"{what}", terminal, seq)
                return
            if isinstance(ev, Submitted):
                job = self._jobs[key] = _Job(_agg(parts), ev.spec, seq)
                self._tick(seq, ev)
                return
            if self.partial:
                self._jobs[key] = _UNKNOWN
                return
            self._flag("job.submitted-first", _agg(parts), f"first event of the job is {ev.type}", seq)
            job = self._jobs[key] = _Job(_agg(parts), getattr(ev, "spec", None), 0)
        if job is _UNKNOWN:  # only "nothing after the end" can be told without the job's beginning
            if isinstance(ev, _TERMINAL):
                del self._jobs[key]
                self._done[key] = seq
            return
        if isinstance(ev, Dispatched):
            self._dispatched(seq, key, job, ev)
        elif isinstance(ev, Started):
            if not job.open_seq or job.open_worker != (ev.domain, ev.worker_id) or job.attempt != ev.attempt:
                held = (
                    f"attempt {job.attempt} on {job.open_worker[1]}" if job.open_worker else "no open attempt"
                )
                self._flag(
                    "job.started-matches",
                    job.agg,
                    f"started attempt {ev.attempt} on {ev.worker_id}, but the job has {held}",
                    job.open_seq or job.last_dispatch or job.submitted,
                    seq,
                )
            elif job.started:
                self._flag(
                    "job.started-once", job.agg, f"attempt {ev.attempt} started twice", job.started, seq
                )
            else:
                job.started = seq
        elif isinstance(ev, _CLOSES):
            self._close(seq, key, job, ev)
        elif isinstance(ev, Submitted):
            self._flag("job.submitted-first", job.agg, "submitted twice", job.submitted, seq)

    def _tick(self, seq: int, ev: Submitted) -> None:
        if ev.schedule_id is None or ev.tick is None:
            return
        tick_key = (ev.domain, ev.schedule_id, ev.tick)
        earlier = self._tick_jobs.get(tick_key)
        if earlier is not None:
            self._flag(
                "schedule.one-job-per-tick",
                f"schedule {ev.domain}/{ev.schedule_id}",
                f"tick {ev.tick.isoformat()} has jobs {earlier[1]} and {ev.job_id}",
                earlier[0],
                seq,
            )
        else:
            self._tick_jobs[tick_key] = (seq, ev.job_id)

    def _dispatched(self, seq: int, key: tuple[str, str], job: _Job, ev: Dispatched) -> None:
        agg = job.agg
        if job.not_before is not None:
            early = (job.not_before - ev.at).total_seconds()
            if early > BACKOFF_TOLERANCE_S:
                why = f"attempt {ev.attempt} dispatched {early:.1f}s before its retry's not_before"
                self._flag("job.retry-backoff", agg, why, job.retry_seqs[-1], seq)
            job.not_before = None
        if job.open_seq:
            self._flag(
                "job.dispatch-while-open",
                agg,
                f"attempt {ev.attempt} dispatched while attempt {job.attempt} is open",
                job.open_seq,
                seq,
            )
            self._release(key, job)
        if ev.attempt != job.attempt + 1:
            self._flag(
                "job.attempt-numbering",
                agg,
                f"attempt {ev.attempt} follows attempt {job.attempt}",
                job.last_dispatch or job.submitted,
                seq,
            )
        if job.spec is not None and ev.spec != job.spec:
            self._flag(
                "job.dispatch-matches",
                agg,
                "the dispatch carries another spec than submitted",
                job.submitted,
                seq,
            )
        elif ev.retries != job.retries or ev.requeues != job.requeues:
            self._flag(
                "job.dispatch-matches",
                agg,
                f"dispatch says {ev.retries} retries, {ev.requeues} requeues; the log has "
                f"{job.retries} and {job.requeues}",
                job.submitted,
                *job.retry_seqs,
                *job.requeue_seqs,
                seq,
            )
        job.attempt = ev.attempt
        job.last_dispatch = job.open_seq = seq
        job.open_worker = (ev.domain, ev.worker_id)
        job.started = 0
        spec = job.spec or ev.spec
        self._on_worker(seq, key, agg, spec, ev)
        # Every open job counts toward its name and its key, whether or not it sets a limit itself.
        job.counted = ((NAME, ev.domain, spec.name),) + (
            ((KEY, ev.domain, spec.concurrency_key),) if spec.concurrency_key is not None else ()
        )
        for limit in job.counted:
            self._open_by_limit[limit][key] = seq
        for limit, allowed in limits(spec, ev.domain, 0):
            open_ = self._open_by_limit[limit]
            if len(open_) > allowed:
                check = "limits.concurrency-key" if limit[0] == KEY else "limits.name-limit"
                what = f"key {limit[2]!r}" if limit[0] == KEY else f"name {limit[2]!r}"
                self._flag(
                    check,
                    agg,
                    f"{len(open_)} jobs with {what} open at once, limit {allowed}",
                    *open_.values(),
                )

    def _on_worker(self, seq: int, key: tuple[str, str], agg: str, spec: JobSpec, ev: Dispatched) -> None:
        worker = self._workers.get((ev.domain, ev.worker_id))
        if worker is None or worker.view is None:
            if not self.partial:
                self._flag(
                    "worker.dispatch-registered",
                    agg,
                    f"dispatched to {ev.worker_id}, not registered in domain {ev.domain}",
                    seq,
                )
            return
        if worker.status != "active":
            self._flag(
                "worker.dispatch-live",
                agg,
                f"dispatched to {ev.worker_id} while it is {worker.status}",
                worker.status_seq,
                seq,
            )
        view = worker.view
        if not eligible(spec, view):
            self._flag(
                "worker.dispatch-fits",
                agg,
                f"{ev.worker_id} (tags {sorted(view.tags)}, users {sorted(view.allowed_users)}, "
                f"executors {sorted(view.executors)}) cannot take this job",
                worker.registered,
                seq,
            )
        worker.open[key] = seq
        if len(worker.open) > worker.view.max_concurrency:
            self._flag(
                "worker.max-concurrency",
                f"worker {ev.domain}/{ev.worker_id}",
                f"{len(worker.open)} attempts open, max_concurrency {worker.view.max_concurrency}",
                worker.registered,
                *worker.open.values(),
            )

    def _release(self, key: tuple[str, str], job: _Job) -> None:
        """The open attempt closed: free its worker slot and its limits."""
        if job.open_worker is not None:
            worker = self._workers.get(job.open_worker)
            if worker is not None:
                worker.open.pop(key, None)
        for limit in job.counted:
            open_ = self._open_by_limit.get(limit)
            if open_ is not None:
                open_.pop(key, None)
                if not open_:
                    del self._open_by_limit[limit]
        job.open_seq = 0
        job.open_worker = None
        job.counted = ()

    def _close(self, seq: int, key: tuple[str, str], job: _Job, ev: AnyJobEvent) -> None:
        attempt: int = getattr(ev, "attempt", 0)
        worker_id: str | None = getattr(ev, "worker_id", None)
        agg = job.agg
        names_attempt = attempt > 0 or isinstance(ev, RetryScheduled | Requeued)
        if names_attempt:
            if not job.open_seq or job.attempt != attempt or job.open_worker != (ev.domain, worker_id):
                held = (
                    f"attempt {job.attempt} on {job.open_worker[1]}" if job.open_worker else "no open attempt"
                )
                self._flag(
                    "job.outcome-matches",
                    agg,
                    f"{ev.type} for attempt {attempt} on {worker_id}, but the job has {held}",
                    job.open_seq or job.last_dispatch or job.submitted,
                    seq,
                )
            elif isinstance(ev, _NEEDS_START) and not job.started:
                self._flag(
                    "job.outcome-matches",
                    agg,
                    f"{ev.type} for attempt {attempt}, which never started",
                    job.open_seq,
                    seq,
                )
        elif job.open_seq:
            self._flag(
                "job.outcome-matches",
                agg,
                f"{ev.type} names no attempt while attempt {job.attempt} is open",
                job.open_seq,
                seq,
            )
        self._release(key, job)
        if isinstance(ev, RetryScheduled):
            if job.spec is not None:
                wanted = retry_delay_s(job.spec, job.retries)
                waits = (ev.not_before - ev.at).total_seconds()
                if abs(waits - wanted) > BACKOFF_TOLERANCE_S:
                    why = f"retry {job.retries + 1} waits {waits:.1f}s, its backoff is {wanted:.1f}s"
                    self._flag("job.retry-backoff", agg, why, seq)
            job.not_before = ev.not_before
            job.retries += 1
            job.retry_seqs.append(seq)
            if job.spec is not None and job.retries > job.spec.max_retries:
                self._flag(
                    "job.retries-within-limit",
                    agg,
                    f"retry {job.retries}, but max_retries is {job.spec.max_retries}",
                    job.submitted,
                    *job.retry_seqs,
                )
        elif isinstance(ev, Requeued):
            job.requeues += 1
            job.requeue_seqs.append(seq)
            if job.requeues > MAX_REQUEUES:
                self._flag(
                    "job.requeues-within-limit",
                    agg,
                    f"requeue {job.requeues}, over {MAX_REQUEUES}",
                    *job.requeue_seqs,
                )
        else:
            del self._jobs[key]
            self._done[key] = seq

    # ---- workers --------------------------------------------------------------------

    def _worker(self, seq: int, parts: list[str], ev: AnyWorkerEvent) -> None:
        key = (parts[1], parts[3])
        worker = self._workers.get(key)
        if worker is None:
            worker = self._workers[key] = _Worker()
        if isinstance(ev, Registered):
            worker.view = WorkerView(
                id=ev.worker_id,
                tags=frozenset(ev.tags),
                allowed_users=frozenset(ev.allowed_users),
                executors=frozenset(ev.executors),
                max_concurrency=ev.max_concurrency,
                load=0,
            )
            worker.registered = worker.status_seq = seq
            worker.status = "active"
        elif isinstance(ev, WentOffline | Stopped):
            worker.status = "offline" if isinstance(ev, WentOffline) else "stopped"
            worker.status_seq = seq
        elif isinstance(ev, CameOnline):
            worker.status = "active"
            worker.status_seq = seq

    # ---- schedules ------------------------------------------------------------------

    def _schedule(self, seq: int, parts: list[str], ev: AnyScheduleEvent) -> None:
        key = (parts[1], parts[3])
        agg = _agg(parts)
        sched = self._schedules.get(key)
        if sched is None:
            if not isinstance(ev, Created) and self.partial:
                return
            if not isinstance(ev, Created):
                self._flag("schedule.created-first", agg, f"first event of the schedule is {ev.type}", seq)
            sched = self._schedules[key] = _Schedule(agg, seq)
            if isinstance(ev, Created) and ev.spec.paused:
                sched.paused = seq
            return
        if sched.deleted:
            self._flag(
                "schedule.after-delete", agg, f"{ev.type} after the schedule was deleted", sched.deleted, seq
            )
            return
        if isinstance(ev, Created):
            self._flag("schedule.created-first", agg, "created twice", sched.created, seq)
        elif isinstance(ev, Paused):
            sched.paused = seq
        elif isinstance(ev, Resumed):
            sched.paused = 0
        elif isinstance(ev, Deleted):
            sched.deleted = seq
        elif isinstance(ev, Fired):
            self._fired(seq, sched, ev)
        elif isinstance(ev, Skipped):
            self._record(seq, sched, ev.tick, "skipped")
        elif isinstance(ev, Missed):
            self._missed(seq, sched, ev)

    def _fired(self, seq: int, sched: _Schedule, ev: Fired) -> None:
        regular = ev.reason in _REGULAR_FIRES
        if regular and sched.paused:
            self._flag(
                "schedule.fire-while-paused",
                sched.agg,
                f"{ev.reason} fire for {ev.tick.isoformat()} while paused",
                sched.paused,
                seq,
            )
        if ev.reason != "run_now":
            earlier = sched.fires.get(ev.tick)
            if earlier is not None:
                self._flag(
                    "schedule.one-job-per-tick",
                    sched.agg,
                    f"tick {ev.tick.isoformat()} fired twice",
                    earlier,
                    seq,
                )
            else:
                sched.fires[ev.tick] = seq
        if regular:
            self._record(seq, sched, ev.tick, "fired")

    def _record(self, seq: int, sched: _Schedule, tick: datetime, what: str) -> None:
        earlier = sched.records.get(tick)
        if earlier is None:
            for first, last, missed_seq in sched.missed:
                if first <= tick <= last:
                    earlier = missed_seq
                    break
        if earlier is not None:
            self._flag(
                "schedule.one-record-per-tick",
                sched.agg,
                f"tick {tick.isoformat()} {what}, but it was recorded before",
                earlier,
                seq,
            )
        else:
            sched.records[tick] = seq

    def _missed(self, seq: int, sched: _Schedule, ev: Missed) -> None:
        for tick, record_seq in sched.records.items():
            if ev.first <= tick <= ev.last:
                self._flag(
                    "schedule.one-record-per-tick",
                    sched.agg,
                    f"missed {ev.first.isoformat()}..{ev.last.isoformat()} covers tick {tick.isoformat()}, "
                    "recorded before",
                    record_seq,
                    seq,
                )
                break
        else:
            for first, last, missed_seq in sched.missed:
                if first <= ev.last and ev.first <= last:
                    self._flag(
                        "schedule.one-record-per-tick", sched.agg, "missed ranges overlap", missed_seq, seq
                    )
                    break
        sched.missed.append((ev.first, ev.last, seq))


def _agg(parts: list[str]) -> str:
    """`job prod/j1`: how a report names an aggregate."""
    if len(parts) >= 4:
        return f"{parts[2]} {parts[1]}/{parts[3]}"
    return ".".join(parts)


def _tags(union: Any) -> dict[type, str]:
    return {cls: str(cls.__struct_config__.tag) for cls in union.__args__}


_TAGS: dict[type, str] = {**_tags(AnyJobEvent), **_tags(AnyWorkerEvent), **_tags(AnyScheduleEvent)}
_good_workers: set[str] = set()  # worker ids already found to be tokens: the check is a regex


def _mismatch(parts: list[str], event: Event) -> str | None:
    """What the payload says that its subject does not (codec.decode_event's rules, on a split subject)."""
    n = len(parts)
    if (n != 5 and n != 6) or parts[0] != "ev":
        return "not an event subject"
    field_name = _id_fields.get(parts[2])
    if field_name is None:
        return None  # domain and template events: decode_event checked them
    if _TAGS.get(type(event)) != parts[4] or event.domain != parts[1]:
        return f"payload says {event.domain}/{event.type}"
    said = getattr(event, field_name)
    if said != parts[3]:
        return f"payload is about {parts[2]} {said!r}"
    worker_id = getattr(event, "worker_id", None)
    if n == 6 and worker_id != parts[5]:
        return "payload names another worker"
    if n != 6 and type(event) is Dispatched:
        return "a dispatch's subject must end with its worker"
    if worker_id is not None and worker_id not in _good_workers:
        if not is_token(worker_id):
            return f"worker id {worker_id!r} may only hold letters, digits, '_' and '-'"
        _good_workers.add(worker_id)
    return None
