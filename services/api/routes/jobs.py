"""Job routes: submit (one or a batch), list, show, history, cancel, retry, logs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from sse_starlette.sse import EventSourceResponse

from events import subjects
from events.ids import is_token
from projections import queries
from services.api import as_of, commands, templating
from services.api.auth import Caller, caller
from services.api.deps import LAST_EVENT_ID, js, open_stream, query, settle, store
from services.api.models import AnyJobIn, BatchIn, BatchOut, CancelIn, Page
from services.api.streams import decode_cursor, follow, last_sequence, lines_of, output_stream, read_logs
from services.runtime import tracing

router = APIRouter(prefix="/jobs", tags=["jobs"])

MAX_PAGE = 500
MAX_LOG_LINES = 100_000  # per page; cursors reach any length
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
IdempotencyKey = Header(default=None, max_length=200, description="same key, same job: 200 instead of 201")


async def _job_or_404(request: Request, who: Caller, job_id: str) -> dict[str, Any]:
    job = await query(request, queries.get_job, who.domain, job_id) if is_token(job_id) else None
    if job is None:
        raise HTTPException(404, detail=f"job {job_id} not found")
    return job


@router.post("", status_code=201, summary="Submit a job")
async def submit(
    body: AnyJobIn,
    request: Request,
    response: Response,
    who: Caller = Depends(caller),
    idempotency_key: str | None = IdempotencyKey,
) -> dict[str, Any]:
    spec, ref = await templating.resolve(request, who, body)
    [sub] = await commands.submit_many(
        store(request), who.domain, who.actor, [spec], idempotency_key, templates=[ref]
    )
    await settle(request, sub.seq, id=sub.job_id, created=sub.created)
    if not sub.created:
        response.status_code = 200
    return await _job_or_404(request, who, sub.job_id)


@router.post("/batch", status_code=201, summary="Submit up to 1,000 jobs: all valid, or none appended")
async def submit_batch(
    body: BatchIn,
    request: Request,
    response: Response,
    who: Caller = Depends(caller),
    idempotency_key: str | None = IdempotencyKey,
) -> BatchOut:
    specs, refs = await templating.resolve_all(request, who, body.jobs)
    subs = await commands.submit_many(
        store(request), who.domain, who.actor, specs, idempotency_key, templates=refs
    )
    created = sum(1 for s in subs if s.created)
    await settle(
        request, max((s.seq for s in subs), default=0) if created == len(subs) else 0,
        ids=[s.job_id for s in subs], created=created, existing=len(subs) - created,
    )  # fmt: skip
    if created == 0:
        response.status_code = 200
    return BatchOut(ids=[s.job_id for s in subs], created=created, existing=len(subs) - created)


@router.get("", summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    who: Caller = Depends(caller),
    status: str | None = Query(default=None, description="one status, or several: failed,timed_out"),
    not_status: str | None = Query(default=None, description="leave out these statuses: succeeded,cancelled"),
    name: str | None = None,
    tag: str | None = None,
    worker: str | None = None,
    label: str | None = Query(default=None, description="key=value"),
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
    cursor: str | None = None,
    since: datetime | None = Query(default=None, description="submitted at or after (ISO time)"),
    until: datetime | None = Query(default=None, description="submitted before (ISO time)"),
) -> Page:
    items, next_cursor = await query(
        request, queries.list_jobs, who.domain, status=status, name=name, tag=tag, worker=worker,
        label=label_pair(label), limit=limit, cursor=cursor, since=since, until=until, not_status=not_status,
    )  # fmt: skip
    return Page(items=items, next_cursor=next_cursor)


def label_pair(label: str | None) -> tuple[str, str] | None:
    """A `key=value` label filter as its two parts; 422 when it is not one."""
    if label is None:
        return None
    key, sep, value = label.partition("=")
    if not sep or not key:
        raise HTTPException(422, detail="label filter must look like key=value")
    return key, value


@router.get("/count", summary="How many jobs, in total or per status, name, worker or tag")
async def count_jobs(
    request: Request,
    who: Caller = Depends(caller),
    group_by: str | None = Query(default=None, description="status | name | worker | tag"),
    since: datetime | None = Query(default=None, description="submitted at or after (ISO time)"),
    until: datetime | None = Query(default=None, description="submitted before (ISO time)"),
) -> dict[str, Any]:
    return await query(request, queries.count_jobs, who.domain, group_by, since=since, until=until)


@router.get("/{job_id}", summary="A job's state, attempts, timings, exit code and error")
async def get_job(
    job_id: str, request: Request, who: Caller = Depends(caller), as_of_seq: int | None = as_of.AS_OF_SEQ
) -> dict[str, Any]:
    if as_of_seq is None:
        detail = await _job_or_404(request, who, job_id)
    elif is_token(job_id):
        detail = await as_of.job_as_of(request, who.domain, job_id, as_of_seq)
    else:
        raise HTTPException(404, detail=f"job {job_id} not found")
    traceparent = await tracing.job_traceparent(store(request), who.domain, job_id)
    detail["trace_id"], detail["traceparent"] = tracing.trace_id(traceparent), traceparent
    return detail


@router.get("/{job_id}/events", summary="A job's full history, in order, with stream sequences")
async def job_events(job_id: str, request: Request, who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    await _job_or_404(request, who, job_id)
    return await query(request, queries.job_events, who.domain, job_id)


@router.post("/{job_id}/cancel", summary="Cancel: at once if pending, through its worker if running")
async def cancel(
    job_id: str, request: Request, body: CancelIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    await _job_or_404(request, who, job_id)
    seq = await commands.cancel(store(request), who.domain, job_id, who.actor, body.reason if body else "")
    await settle(request, seq, id=job_id)
    return await _job_or_404(request, who, job_id)


@router.post("/{job_id}/retry", status_code=201, summary="Run a finished job again, as a new job")
async def retry(job_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    await _job_or_404(request, who, job_id)
    sub = await commands.retry(store(request), who.domain, job_id, who.actor)
    await settle(request, sub.seq, id=sub.job_id, retry_of=job_id)
    return await _job_or_404(request, who, sub.job_id)


@router.get(
    "/{job_id}/logs",
    summary="Output lines, a page at a time; with follow=true, Server-Sent Events until the job ends",
)
async def logs(
    job_id: str,
    request: Request,
    who: Caller = Depends(caller),
    attempt: int | None = Query(default=None, ge=1),
    follow_: bool = Query(default=False, alias="follow"),
    limit: int = Query(default=10_000, ge=1, le=MAX_LOG_LINES, description="lines per page"),
    cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
    tail: int | None = Query(default=None, ge=1, le=MAX_LOG_LINES, description="only the last N lines"),
    last_event_id: str | None = LAST_EVENT_ID,
) -> Any:
    """Without `follow`: `{"items": [...], "next_cursor": ...}`, the lines stored when the request
    came, in order. A non-null `next_cursor` means more lines are stored: pass it as `cursor`.
    Each line carries `attempt`, its attempt-wide `seq`, `stream`, `line`, `at` and `pos`.

    With `follow=true`: SSE `line` events (one per line, batches split) as they land; once the
    job is terminal, every line up to the last stored one, then `end` with the job's status. Each
    `line` event's id is the line's `pos`: a reconnect with `Last-Event-ID` (what EventSource
    sends) goes on after that line, and `cursor` starts at a page's `next_cursor`."""
    await _job_or_404(request, who, job_id)
    if not follow_:
        if cursor is not None and tail is not None:
            raise HTTPException(422, detail="give cursor or tail, not both")
        try:
            page = await read_logs(js(request), who.domain, job_id, attempt, limit, cursor, tail)
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from exc
        except TimeoutError as exc:
            raise HTTPException(503, detail=f"{exc}; try again") from exc
        return {"items": page.items, "next_cursor": page.next_cursor}
    if cursor is not None and last_event_id is not None:
        raise HTTPException(422, detail="give cursor or Last-Event-ID, not both")
    try:
        if last_event_id is not None:
            seq, index = decode_cursor(last_event_id)
            start: tuple[int, int] | None = (seq, index + 1)  # on after the last line received
        else:
            start = decode_cursor(cursor) if cursor is not None else None
    except ValueError as exc:
        raise HTTPException(422, detail=f"{exc}: a line's pos, as `<stream seq>.<index>`") from exc
    subject = subjects.logs(who.domain, job_id, attempt) if attempt else subjects.logs_all(who.domain, job_id)
    release = open_stream(request, who.limit_key)

    async def stream() -> AsyncIterator[dict[str, str]]:
        try:
            async for line in _follow_lines(request, who, job_id, subject, start):
                yield line
        finally:
            release()

    return EventSourceResponse(stream())


# After the job ended, how long to wait for stored lines that do not come (expired, deleted).
DRAIN_QUIET_S = 10.0


async def _follow_lines(
    request: Request, who: Caller, job_id: str, subject: str, start: tuple[int, int] | None = None
) -> AsyncIterator[dict[str, str]]:
    """Lines as they land, from `start` (stream sequence, index of the first line to send in
    that message) or the beginning; once the job is terminal, read on to the last stored
    sequence, then end."""
    delivered = 0
    last: int | None = None
    status = "unknown"
    quiet_since = 0.0
    stream, _ = await output_stream(js(request), who.domain, subject)
    from_seq, skip = start if start is not None else (None, 0)
    async for msg in follow(js(request), stream, subject, from_seq):
        if msg is not None:
            delivered = msg.metadata.sequence.stream
            quiet_since = 0.0
            lines = lines_of(msg)
            if delivered == from_seq:
                lines = lines[skip:]
            for line in lines:
                yield {"event": "line", "id": line["pos"], "data": json.dumps(line, default=str)}
            if last is None and msg.metadata.num_pending > 0:
                continue
        if last is None:
            job = await query(request, queries.get_job, who.domain, job_id)
            if job is not None and job["status"] not in TERMINAL:
                continue
            status = job["status"] if job else "unknown"
            # Lines are stored before the outcome is appended: everything is there by now.
            last = await last_sequence(js(request), stream, subject)
        if delivered >= last:
            yield {"event": "end", "data": json.dumps({"status": status})}
            return
        if msg is None:
            now = time.monotonic()
            quiet_since = quiet_since or now
            if now - quiet_since > DRAIN_QUIET_S:
                yield {"event": "end", "data": json.dumps({"status": status, "incomplete": True,
                                                          "resume_after": delivered})}  # fmt: skip
                return
