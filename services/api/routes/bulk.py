"""Bulk cancel and retry: on a list of ids, or on every job a filter matches, counted first.

`dry_run` answers how many jobs match (and their ids) without touching any; a real run acts on
each job on its own, as its single-job route would, and answers a result per job: one job that
cannot be cancelled (it had already ended) or retried (it has not) does not stop the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from events.base import DomainError
from events.ids import is_token
from projections import queries
from services.api import commands
from services.api.auth import Caller, caller
from services.api.deps import query, settle, store
from services.api.models import Strict
from services.api.routes.jobs import label_pair

router = APIRouter(prefix="/jobs/bulk", tags=["jobs"])

MAX_BULK = 10_000
IN_FLIGHT = 32  # appends at once: the broker pipelines them; more only queue in the client


class JobFilterIn(Strict):
    """The same filters as `GET /jobs`."""

    status: str | None = Field(default=None, description="one status, or several: failed,timed_out")
    not_status: str | None = Field(default=None, description="leave out these statuses")
    name: str | None = None
    tag: str | None = None
    worker: str | None = None
    label: str | None = Field(default=None, description="key=value")
    since: datetime | None = None
    until: datetime | None = None


class BulkIn(Strict):
    ids: Annotated[list[str], Field(min_length=1, max_length=MAX_BULK)] | None = None
    filter: JobFilterIn | None = None
    reason: Annotated[str, Field(max_length=1000)] = ""
    dry_run: bool = Field(default=False, description="only count what matches; change nothing")

    @model_validator(mode="after")
    def one_selection(self) -> BulkIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give ids or filter, exactly one of them")
        return self


class BulkResult(BaseModel):
    id: str
    ok: bool
    status: str | None = Field(default=None, description="status after the action (retry: the new job's)")
    new_id: str | None = Field(default=None, description="retry: the new job")
    error: str | None = None


class BulkOut(BaseModel):
    matched: int = Field(description="jobs the selection names (a filter: that match it now)")
    dry_run: bool
    ids: list[str] = Field(description="the jobs acted on (dry run: that would be)")
    succeeded: int = 0
    failed: int = 0
    results: list[BulkResult] = Field(default_factory=list)


async def _selected(request: Request, who: Caller, body: BulkIn) -> tuple[int, list[str]]:
    if body.ids is not None:
        unique = list(dict.fromkeys(body.ids))
        return len(unique), unique
    assert body.filter is not None
    f = body.filter
    selection = queries.JobFilter(
        f.status, f.not_status, f.name, f.tag, f.worker, label_pair(f.label), f.since, f.until
    )
    matched, ids = await query(request, queries.matching_jobs, who.domain, selection, MAX_BULK + 1)
    if matched > MAX_BULK:
        raise HTTPException(
            422, detail=f"{matched:,} jobs match; at most {MAX_BULK:,} at once: narrow the filter"
        )
    return matched, ids


async def _each(
    ids: list[str], act: Callable[[str], Awaitable[tuple[BulkResult, int]]]
) -> tuple[list[BulkResult], int]:
    """`act` on every id, IN_FLIGHT at a time, in the given order; and the highest seq appended."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(job_id: str) -> tuple[BulkResult, int]:
        if not is_token(job_id):
            return BulkResult(id=job_id, ok=False, error=f"job {job_id} not found"), 0
        async with gate:
            try:
                return await act(job_id)
            except DomainError as exc:  # not found, already ended, not ended yet, kept changing
                return BulkResult(id=job_id, ok=False, error=str(exc)), 0

    done = await asyncio.gather(*(one(i) for i in ids))
    return [r for r, _ in done], max((seq for _, seq in done), default=0)


async def _statuses(request: Request, who: Caller, ids: list[str]) -> dict[str, str]:
    return await query(request, queries.job_statuses, who.domain, ids)


def _out(matched: int, ids: list[str], results: list[BulkResult]) -> BulkOut:
    ok = sum(1 for r in results if r.ok)
    failed = len(results) - ok
    return BulkOut(matched=matched, dry_run=False, ids=ids, succeeded=ok, failed=failed, results=results)


@router.post("/cancel", summary="Cancel the jobs named or matched; a count first with dry_run")
async def bulk_cancel(body: BulkIn, request: Request, who: Caller = Depends(caller)) -> BulkOut:
    matched, ids = await _selected(request, who, body)
    if body.dry_run:
        return BulkOut(matched=matched, dry_run=True, ids=ids)

    async def cancel(job_id: str) -> tuple[BulkResult, int]:
        seq = await commands.cancel(store(request), who.domain, job_id, who.actor, body.reason)
        return BulkResult(id=job_id, ok=True), seq

    results, seq = await _each(ids, cancel)
    await settle(request, seq, ids=[r.id for r in results if r.ok])
    statuses = await _statuses(request, who, [r.id for r in results if r.ok])
    for r in results:
        r.status = statuses.get(r.id)
    return _out(matched, ids, results)


@router.post("/retry", summary="Run the finished jobs named or matched again, each as a new job")
async def bulk_retry(body: BulkIn, request: Request, who: Caller = Depends(caller)) -> BulkOut:
    matched, ids = await _selected(request, who, body)
    if body.dry_run:
        return BulkOut(matched=matched, dry_run=True, ids=ids)

    async def retry(job_id: str) -> tuple[BulkResult, int]:
        sub = await commands.retry(store(request), who.domain, job_id, who.actor)
        return BulkResult(id=job_id, ok=True, new_id=sub.job_id), sub.seq

    results, seq = await _each(ids, retry)
    await settle(request, seq, new_ids=[r.new_id for r in results if r.new_id])
    statuses = await _statuses(request, who, [r.new_id for r in results if r.new_id])
    for r in results:
        r.status = statuses.get(r.new_id or "")
    return _out(matched, ids, results)
