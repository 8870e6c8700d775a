"""Operators' commands on a worker (drain, disable, enable), turned into events by
`events.worker.decide_admin_state`."""

from __future__ import annotations

from events import subjects
from events.base import Conflict, NotFound
from events.store import Append, EventStore, WrongExpectedSequence
from events.worker import AdminState, WorkerState, decide_admin_state, evolve_worker

ATTEMPTS = 5


async def change_state(
    store: EventStore, domain: str, worker_id: str, actor: str, target: AdminState, reason: str = ""
) -> int:
    """Append the worker's `state_changed`, fenced on its history (a dispatcher's `offline` or
    a re-registration in between is read again); the sequence appended, 0 if nothing changed."""
    scope = subjects.worker_all(domain, worker_id)
    for _ in range(ATTEMPTS):
        state: WorkerState | None = None
        last, last_id = 0, None
        for stored in await store.read(scope):
            state = evolve_worker(state, stored.event)  # type: ignore[arg-type]
            last, last_id = stored.seq, stored.event.id
        if state is None:
            raise NotFound(f"worker {worker_id} not found")
        event = decide_admin_state(state, target, actor, cause=last_id, reason=reason)
        if event is None:
            return 0
        subject = subjects.worker(domain, worker_id, event.type)
        try:
            return (await store.append(Append(subject, event, last, scope))).seq
        except WrongExpectedSequence:
            continue
    raise Conflict(f"worker {worker_id} kept changing; try again")
