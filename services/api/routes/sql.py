"""`POST /sql`: one read-only SELECT over the read models (see projections/analytics_sql.py).

The admin token reads every table of every domain; a domain token reads its own domain's
rows only, whichever domain it names.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import Field

from projections import analytics_sql
from services.api.auth import Caller, caller
from services.api.deps import query
from services.api.models import Strict

router = APIRouter(prefix="/sql", tags=["analytics"])
# Queries run on the threads every read of the API shares (up to 10 s each): a few at a time only,
# so slow ones cannot hold every thread and stall the other routes.
MAX_RUNNING = 2


class SqlIn(Strict):
    sql: Annotated[str, Field(min_length=1, max_length=100_000)]
    max_rows: Annotated[int, Field(ge=1, le=analytics_sql.MAX_ROWS)] = analytics_sql.MAX_ROWS


@router.post("", summary="Run one read-only SELECT over the read models (10 s, at most 100,000 rows)")
async def run_sql(body: SqlIn, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Answers `columns`, `types`, `rows`, `row_count` and `truncated` (more rows than `max_rows`).
    Writes, ATTACH, COPY, INSTALL/LOAD, PRAGMA/SET and reading files or URLs are refused (400);
    429 while two queries already run."""
    domain = None if who.admin else who.domain
    state = request.app.state
    running = getattr(state, "sql_running", 0)
    if running >= MAX_RUNNING:
        raise HTTPException(
            429,
            detail=f"at most {MAX_RUNNING} SQL queries run at once; try again",
            headers={"Retry-After": "2"},
        )
    state.sql_running = running + 1
    try:
        result = await query(request, analytics_sql.run_sql, body.sql, domain, body.max_rows)
    finally:
        state.sql_running -= 1
    return {"scope": "all domains" if domain is None else domain, **result}
