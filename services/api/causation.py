"""The causation of a command's events: the aggregate's last event, the state it was decided on.

A request answers no event, but a change to something that exists is decided on its state as
the log had it, so the change names that state's last event (as a job's cancel or retry does,
events/job.py). Only an aggregate's first event, made by a request, names none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from msgspec import structs

from events.base import Event
from events.store import EventStore

S = TypeVar("S")
E = TypeVar("E", bound=Event)


async def fold_last(
    store: EventStore, filter_subject: str, evolve_fn: Callable[[S | None, Any], S | None]
) -> tuple[S | None, int, str | None]:
    """`EventStore.fold`, plus the id of the last event folded in (None: no events)."""
    state: S | None = None
    last, cause = 0, None
    for stored in await store.read(filter_subject):
        state = evolve_fn(state, stored.event)
        last, cause = stored.seq, stored.event.id
    return state, last, cause


def caused(event: E, cause: str | None) -> E:
    """The event naming `cause`, unless it names one already (what it answers)."""
    if event.causation_id is not None or cause is None:
        return event
    return structs.replace(event, causation_id=cause)
