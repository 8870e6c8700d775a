"""Commands the API accepts, turned into events by the pure rules in events/."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from events.base import Conflict, DomainError, NotFound
from events.ids import new_id
from events.job import JobSpec, Submitted, decide_cancel
from events.store import Append, Appended, EventStore, WrongExpectedSequence, job_append, tracing_on

CANCEL_ATTEMPTS = 5


def idempotent_id(domain: str, key: str) -> str:
    """A job id derived from the client's key, so a key can create at most one job, ever."""
    return "k" + hashlib.sha256(f"{domain}\0{key}".encode()).hexdigest()[:25]


@dataclass(frozen=True)
class Submission:
    job_id: str
    created: bool
    seq: int


async def submit_many(
    store: EventStore,
    domain: str,
    actor: str,
    specs: list[JobSpec],
    idempotency_key: str | None = None,
    retry_of: str | None = None,
    templates: list[str | None] | None = None,
) -> list[Submission]:
    """Append one `submitted` per spec, each creating its job only if the job has no events yet."""
    keys = [
        (f"{idempotency_key}#{i}" if len(specs) > 1 else idempotency_key) if idempotency_key else None
        for i in range(len(specs))
    ]
    ids = [idempotent_id(domain, k) if k else new_id() for k in keys]
    refs = templates or [None] * len(specs)
    items = [
        job_append(
            Submitted(
                domain=domain, actor=actor, job_id=job_id, correlation_id=job_id,
                spec=spec, idempotency_key=key, retry_of=retry_of, template=ref,
            ),
            expected=0,
            msg_id=f"submit:{domain}:{key}" if key else None,
        )
        for job_id, spec, key, ref in zip(ids, specs, keys, refs, strict=True)
    ]  # fmt: skip
    if len(items) > 1 and tracing_on():
        items = _a_trace_each(items)
    results = await store.append_many(items)
    out: list[Submission] = []
    for job_id, spec, key, result in zip(ids, specs, keys, results, strict=True):
        if isinstance(result, Appended):
            out.append(Submission(job_id, not result.duplicate, result.seq))
        elif isinstance(result, WrongExpectedSequence):
            # The key was used before: that job is the answer.
            out.append(Submission(job_id, False, 0))
        else:
            raise result
        if key is not None and not out[-1].created:
            await _same_request(store, domain, job_id, key, spec)
    return out


def _a_trace_each(items: list[Append]) -> list[Append]:
    """A batch's jobs are one trace each (sampled each on its own), not 1,000 jobs in the
    request's trace: each submit is a root, linked to the request's span."""
    request = trace.get_current_span().get_span_context()
    links = (Link(request),) if request.is_valid else ()
    return [replace(item, context=Context(), links=links) for item in items]


class IdempotencyMismatch(Conflict):
    code = "idempotency_key_reused"


async def _same_request(store: EventStore, domain: str, job_id: str, key: str, spec: JobSpec) -> None:
    """A key names one request: reused with another body it is a client bug, never the old job
    silently (Stripe answers the same way). Nothing is appended either way."""
    state, _ = await store.read_job(domain, job_id)
    if state is not None and state.spec != spec:
        raise IdempotencyMismatch(
            f"Idempotency-Key {key!r} was already used for job {job_id} with a different job spec; "
            "use a new key for a different job"
        )


async def cancel(store: EventStore, domain: str, job_id: str, actor: str, reason: str) -> int:
    """Cancel from the log's current state; a race with the dispatcher or worker is retried."""
    for _ in range(CANCEL_ATTEMPTS):
        state, last = await store.read_job(domain, job_id)
        if state is None:
            raise NotFound(f"job {job_id} not found")
        event = decide_cancel(state, actor, reason)
        try:
            return (await store.append(job_append(event, last))).seq
        except WrongExpectedSequence:
            continue
    raise Conflict(f"job {job_id} kept changing; cancel again")


async def retry(store: EventStore, domain: str, job_id: str, actor: str) -> Submission:
    """A finished job runs again as a new job linked to it; the log of the old one never changes."""
    state, _ = await store.read_job(domain, job_id)
    if state is None:
        raise NotFound(f"job {job_id} not found")
    if not state.terminal:
        raise DomainError(f"job {job_id} is {state.status}; only finished jobs can be retried")
    [submission] = await submit_many(store, domain, actor, [state.spec], retry_of=job_id)
    return submission
