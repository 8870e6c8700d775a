"""Analytics routes: questions about runs over a time range, each scoped to the caller's domain.

The SQL is in projections/analytics.py; these routes parse the range (one dependency for a
plain range, one for a bucketed one) and map a range or interval it cannot answer to 422.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import duckdb
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from events.base import utcnow
from projections import analytics
from services.api.auth import Caller, caller
from services.api.deps import query

router = APIRouter(prefix="/analytics", tags=["analytics"])

Since = Query(
    default=None, description="start of the range, ISO time (UTC if no zone) [default: until - 24h]"
)
Until = Query(default=None, description="end of the range, ISO time, exclusive [default: now]")
Interval = Query(default="1h", description="bucket width: 30s, 5m, 1h, 1d (at most 10,000 buckets)")
Limit = Query(default=20, ge=1, le=analytics.MAX_TOP, description="how many to return")


def _window(since: datetime | None, until: datetime | None, interval: str | None = None) -> analytics.Window:
    try:
        return analytics.window(since, until, interval, now=utcnow())
    except analytics.AnalyticsQueryError as exc:
        raise HTTPException(422, detail=str(exc)) from exc


def time_range(since: datetime | None = Since, until: datetime | None = Until) -> analytics.Window:
    """`since`/`until` of a route that answers over the whole range."""
    return _window(since, until)


def bucketed_range(
    since: datetime | None = Since, until: datetime | None = Until, interval: str = Interval
) -> analytics.Window:
    """`since`/`until`/`interval` of a route that answers bucket by bucket."""
    return _window(since, until, interval)


Range = Depends(time_range)
Buckets = Depends(bucketed_range)


async def _answer(
    request: Request, who: Caller, win: analytics.Window, fn: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """`fn(domain, window, *args)` off the event loop, with the range it covered."""
    try:
        body = await query(request, fn, who.domain, win, *args)
    except analytics.AnalyticsQueryError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    except duckdb.CatalogException as exc:
        # The read model served while one of a new schema version is built beside it has no `runs`.
        raise HTTPException(
            503, detail="the read model is being rebuilt for a new schema version; analytics answer once "
            "it has caught up (see /ready)", headers={"Retry-After": "10"},
        ) from exc  # fmt: skip
    return {"domain": who.domain, "since": win.since.isoformat(), "until": win.until.isoformat(), **body}


@router.get("/runs", summary="Attempts over time, by status (bucketed by dispatch time)")
async def runs(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Buckets
) -> dict[str, Any]:
    return await _answer(request, who, win, analytics.runs_over_time)


@router.get("/durations", summary="Success rate and duration p50/p90/p99 per job name, tag, label or worker")
async def durations(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Range,
    group_by: str = Query(default="name", description="name | tag | label | worker"),
    limit: int = Query(default=100, ge=1, le=analytics.MAX_TOP),
) -> dict[str, Any]:  # fmt: skip
    return await _answer(request, who, win, analytics.durations, group_by, limit)


@router.get("/queue-wait", summary="Queue wait (queued → dispatched) over time: count and percentiles")
async def queue_wait(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Buckets
) -> dict[str, Any]:
    return await _answer(request, who, win, analytics.queue_wait)


@router.get("/slowest", summary="The longest finished attempts")
async def slowest(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Range, limit: int = Limit
) -> dict[str, Any]:
    return await _answer(request, who, win, analytics.slowest, limit)


@router.get("/failing", summary="The job names with the most failed attempts")
async def failing(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Range, limit: int = Limit
) -> dict[str, Any]:
    return await _answer(request, who, win, analytics.failing, limit)


@router.get("/failures", summary="Failed attempts by outcome, exit code and error")
async def failures(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Range,
    limit: int = Query(default=50, ge=1, le=analytics.MAX_TOP),
) -> dict[str, Any]:  # fmt: skip
    return await _answer(request, who, win, analytics.failures_by_cause, limit)


@router.get("/utilisation", summary="Busy worker slots over time, against the slots workers offer")
async def utilisation(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Buckets
) -> dict[str, Any]:
    return await _answer(request, who, win, analytics.utilisation, utcnow())


@router.get("/schedules", summary="Per schedule: ticks fired, skipped, queued, missed, and lateness")
async def schedules(
    request: Request, who: Caller = Depends(caller), win: analytics.Window = Range,
    limit: int = Query(default=100, ge=1, le=analytics.MAX_TOP),
) -> dict[str, Any]:  # fmt: skip
    return await _answer(request, who, win, analytics.schedule_lateness, limit)
