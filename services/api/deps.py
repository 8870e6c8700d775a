"""Handles on the process-wide resources a route needs, and the read-your-writes wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Header, HTTPException, Request
from nats.js import JetStreamContext

from events.store import EventStore
from projections.projector import Projector
from services.api.settings import READ_YOUR_WRITES_TIMEOUT_S

T = TypeVar("T")


# What a browser's EventSource sends on reconnect: the id of the last event it received.
LAST_EVENT_ID = Header(
    default=None, alias="Last-Event-ID", description="resume after the event with this id (SSE reconnect)"
)


def store(request: Request) -> EventStore:
    return request.app.state.store  # type: ignore[no-any-return]


def js(request: Request) -> JetStreamContext:
    return request.app.state.js  # type: ignore[no-any-return]


def projector(request: Request) -> Projector:
    return request.app.state.projector  # type: ignore[no-any-return]


async def query(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a projection query in a thread with its own cursor, off the event loop."""
    proj = projector(request)

    def run() -> T:
        cur = proj.cursor()
        try:
            return fn(cur, *args, **kwargs)
        finally:
            cur.close()

    return await asyncio.to_thread(run)


class NotYetShown(Exception):
    """A write the log holds (at `seq`) that the read model does not show yet. Not a failure:
    answered 202 with what the write made (ids, a token shown once), so a client neither loses
    it nor sends it again."""

    def __init__(self, seq: int, landed: dict[str, Any], rebuilding: bool) -> None:
        why = "is being rebuilt for a new schema version" if rebuilding else "lags behind the log"
        super().__init__(
            f"the write landed in the log at seq {seq}, but the read model {why} and does not show "
            "it yet: do not send it again; read it back in a few seconds"
        )
        self.seq = seq
        self.landed = landed


async def settle(request: Request, seq: int, **landed: Any) -> None:
    """Answer a write only once the projection shows it; `landed` is what the write made, for the
    202 answered instead when the projection cannot show it in time (or is being rebuilt, when it
    cannot until the switch: then at once)."""
    if seq <= 0:
        seq = await store(request).last_seq()
    proj = projector(request)
    if proj.applied_seq >= seq:
        return
    if proj.building is not None or not await proj.wait_for(seq, READ_YOUR_WRITES_TIMEOUT_S):
        raise NotYetShown(seq, landed, rebuilding=proj.building is not None)


def open_stream(request: Request, key: str) -> Callable[[], None]:
    """Take one of the token's event-stream slots (429 if none is left); returns its release."""
    slots = request.app.state.streams
    if not slots.acquire(key):
        raise HTTPException(
            429, detail=f"at most {slots.per_key} open event streams per token", headers={"Retry-After": "5"}
        )
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.release(key)

    return release
