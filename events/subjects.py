"""Subject builders and parsers: the one place that knows the subject map."""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_PREFIX = "ev"
HEARTBEATS_PREFIX = "hb"
LOGS_PREFIX = "log"
READS_PREFIX = "rd"
INGRESS_PREFIX = "in"  # where broker-auth takes in what domain tokens publish


def job(domain: str, job_id: str, type_: str, worker_id: str | None = None) -> str:
    base = f"{EVENTS_PREFIX}.{domain}.job.{job_id}.{type_}"
    return f"{base}.{worker_id}" if worker_id else base


def aggregate_all(domain: str, aggregate: str, aggregate_id: str) -> str:
    """Filter covering every event of one aggregate: its optimistic-concurrency scope."""
    return f"{EVENTS_PREFIX}.{domain}.{aggregate}.{aggregate_id}.>"


def job_all(domain: str, job_id: str) -> str:
    return aggregate_all(domain, "job", job_id)


def job_type_all(domain: str, type_: str) -> str:
    return f"{EVENTS_PREFIX}.{domain}.job.*.{type_}"


def dispatches_for(domain: str, worker_id: str) -> str:
    """Filter of a worker's durable consumer: one append is both event and delivery."""
    return f"{EVENTS_PREFIX}.{domain}.job.*.dispatched.{worker_id}"


def schedule(domain: str, schedule_id: str, type_: str) -> str:
    return f"{EVENTS_PREFIX}.{domain}.schedule.{schedule_id}.{type_}"


def schedule_all(domain: str, schedule_id: str) -> str:
    return aggregate_all(domain, "schedule", schedule_id)


def template(domain: str, name: str, type_: str) -> str:
    return f"{EVENTS_PREFIX}.{domain}.template.{name}.{type_}"


def template_all(domain: str, name: str) -> str:
    return aggregate_all(domain, "template", name)


def domain_event(domain: str, type_: str) -> str:
    """A domain's own events: the aggregate id is the domain name itself."""
    return f"{EVENTS_PREFIX}.{domain}.domain.{domain}.{type_}"


def domain_all(domain: str) -> str:
    return aggregate_all(domain, "domain", domain)


def worker(domain: str, worker_id: str, type_: str) -> str:
    return f"{EVENTS_PREFIX}.{domain}.worker.{worker_id}.{type_}"


def worker_all(domain: str, worker_id: str) -> str:
    return aggregate_all(domain, "worker", worker_id)


def heartbeat(domain: str, worker_id: str) -> str:
    return f"{HEARTBEATS_PREFIX}.{domain}.{worker_id}"


def logs(domain: str, job_id: str, attempt: int) -> str:
    return f"{LOGS_PREFIX}.{domain}.{job_id}.{attempt}"


def logs_all(domain: str, job_id: str) -> str:
    return f"{LOGS_PREFIX}.{domain}.{job_id}.*"


def read_request(filter_subject: str) -> str:
    """Where a domain-token client asks for one aggregate's events (`rd.<domain>.<aggregate>.<id>`).

    Direct gets cannot be limited by subject at the broker, so token logins read through
    this request subject instead, which can.
    """
    parts = filter_subject.split(".")
    if len(parts) != 5 or parts[0] != EVENTS_PREFIX or parts[4] != ">" or "*" in parts or ">" in parts[:4]:
        raise SubjectError(f"only one aggregate can be read through the broker, not {filter_subject!r}")
    return ".".join([READS_PREFIX, *parts[1:4]])


def read_filter(request_subject: str) -> str:
    """The aggregate filter a read request asks for; the inverse of `read_request`."""
    parts = request_subject.split(".")
    if len(parts) != 4 or parts[0] != READS_PREFIX:
        raise SubjectError(f"not a read request subject: {request_subject!r}")
    return aggregate_all(*parts[1:4])


def domain_events(domain: str) -> str:
    return f"{EVENTS_PREFIX}.{domain}.>"


@dataclass(frozen=True, slots=True)
class EventSubject:
    """A parsed event subject: `ev.<domain>.<aggregate>.<id>.<type>[.<worker>]`."""

    domain: str
    aggregate: str
    aggregate_id: str
    type: str
    worker_id: str | None = None


class SubjectError(ValueError):
    pass


def parse_event(subject: str) -> EventSubject:
    parts = subject.split(".")
    if len(parts) < 5 or len(parts) > 6 or parts[0] != EVENTS_PREFIX:
        raise SubjectError(f"not an event subject: {subject!r}")
    worker_id = parts[5] if len(parts) == 6 else None
    return EventSubject(parts[1], parts[2], parts[3], parts[4], worker_id)
