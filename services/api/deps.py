"""Handles on the process-wide resources a route needs, and the read-your-writes wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from nats.js import JetStreamContext

from events.store import EventStore
from projections.projector import Projector
from services.api.settings import READ_YOUR_WRITES_TIMEOUT_S

T = TypeVar("T")


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


async def settle(request: Request, seq: int) -> None:
    """Answer a write only once the projection shows it."""
    if seq <= 0:
        seq = await store(request).last_seq()
    if not await projector(request).wait_for(seq, READ_YOUR_WRITES_TIMEOUT_S):
        raise HTTPException(503, detail=f"the write landed (seq {seq}) but the read model lags behind")


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
