"""The domain's event stream as Server-Sent Events, for UIs and scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sse_starlette.sse import EventSourceResponse

from events import subjects
from events.streams import EVENTS_STREAM
from services.api.auth import Caller, caller
from services.api.deps import LAST_EVENT_ID, js, open_stream
from services.api.streams import follow

router = APIRouter(tags=["events"])


@router.get("/events", summary="Server-Sent Events of every event in the domain")
async def events(
    request: Request,
    who: Caller = Depends(caller),
    since: int | None = Query(default=None, ge=1, description="replay from this stream sequence"),
    last_event_id: str | None = LAST_EVENT_ID,
) -> EventSourceResponse:
    """Each event's SSE id is its stream sequence: `since` replays from a sequence, and a
    reconnect with `Last-Event-ID` (what EventSource sends) goes on after the last one received."""
    if last_event_id is not None:
        if since is not None:
            raise HTTPException(422, detail="give since or Last-Event-ID, not both")
        if not last_event_id.strip().isdigit():
            raise HTTPException(422, detail=f"Last-Event-ID {last_event_id!r} is not a stream sequence")
        since = int(last_event_id) + 1
    release = open_stream(request, who.limit_key)

    async def stream() -> AsyncIterator[dict[str, str]]:
        start = since if since is not None else -1
        try:
            async for msg in follow(js(request), EVENTS_STREAM, subjects.domain_events(who.domain), start):
                if msg is None:
                    if await request.is_disconnected():
                        return
                    continue
                parsed = subjects.parse_event(msg.subject)
                yield {
                    "id": str(msg.metadata.sequence.stream),
                    "event": parsed.type,
                    "data": msg.data.decode(),
                }
        finally:
            release()

    return EventSourceResponse(stream())
