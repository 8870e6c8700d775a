"""Domain commands: read the domain from the log, decide with the pure rules, append fenced."""

from __future__ import annotations

from collections.abc import Callable

from events import subjects
from events.base import Conflict, NotFound, utcnow
from events.domain import (
    DEFAULT_DOMAIN,
    DomainEvent,
    DomainState,
    NewToken,
    decide_create,
    decide_issue,
    decide_rotate,
    evolve_domain,
)
from events.store import EventStore, WrongExpectedSequence, domain_append
from services.api.causation import caused, fold_last

ATTEMPTS = 5


async def ensure_default(store: EventStore) -> int:
    """The default domain exists from the first start on; returns the sequence to wait for."""
    state, last = await store.read_domain(DEFAULT_DOMAIN)
    if state is not None:
        return last
    try:
        return (await store.append(domain_append(decide_create(DEFAULT_DOMAIN, "system"), 0))).seq
    except WrongExpectedSequence:  # another API replica made it first
        return (await store.read_domain(DEFAULT_DOMAIN))[1]


async def create(store: EventStore, name: str, actor: str, description: str) -> tuple[NewToken, int]:
    """The domain and its first token, whose value is returned this once."""
    try:
        await store.append(domain_append(decide_create(name, actor, description), 0))
    except WrongExpectedSequence as exc:
        raise Conflict(f"domain {name} exists already") from exc
    state, last, cause = await fold_last(store, subjects.domain_all(name), evolve_domain)
    assert state is not None
    token = decide_issue(state, "first", actor)
    seq = (await store.append(domain_append(caused(token.event, cause), last))).seq
    return token, seq


async def change(store: EventStore, name: str, decide: Callable[[DomainState], list[DomainEvent]]) -> int:
    """Apply one decision (one or more events, in order) to the domain's latest state."""
    for _ in range(ATTEMPTS):
        state, last, cause = await fold_last(store, subjects.domain_all(name), evolve_domain)
        if state is None or state.deleted:
            raise NotFound(f"domain {name} not found")
        try:
            for event in decide(state):
                event = caused(event, cause)  # each names the one before it, the first the state's last
                last, cause = (await store.append(domain_append(event, last))).seq, event.id
            return last
        except WrongExpectedSequence:
            continue
    raise Conflict(f"domain {name} kept changing; try again")


async def issue(store: EventStore, name: str, token_name: str, actor: str) -> tuple[NewToken, int]:
    made: list[NewToken] = []

    def decide(state: DomainState) -> list[DomainEvent]:
        made[:] = [decide_issue(state, token_name, actor)]
        return [made[0].event]

    seq = await change(store, name, decide)
    return made[0], seq


async def rotate(
    store: EventStore, name: str, token_id: str, overlap_s: float, actor: str
) -> tuple[NewToken, int]:
    made: list[NewToken] = []

    def decide(state: DomainState) -> list[DomainEvent]:
        new, expiring = decide_rotate(state, token_id, overlap_s, actor, utcnow())
        made[:] = [new]
        return [new.event, expiring]

    seq = await change(store, name, decide)
    return made[0], seq
