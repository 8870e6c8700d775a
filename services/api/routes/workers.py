"""Worker routes: the fleet as the projection sees it, with live heartbeat facts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from events.ids import is_token
from projections import queries
from services.api import as_of
from services.api.auth import Caller, caller
from services.api.deps import query

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", summary="Workers of the domain")
async def list_workers(request: Request, who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    return await query(request, queries.list_workers, who.domain)


@router.get("/{worker_id}", summary="One worker")
async def get_worker(
    worker_id: str, request: Request, who: Caller = Depends(caller), as_of_seq: int | None = as_of.AS_OF_SEQ
) -> dict[str, Any]:
    if as_of_seq is not None and is_token(worker_id):
        return await as_of.worker_as_of(request, who.domain, worker_id, as_of_seq)
    worker = await query(request, queries.get_worker, who.domain, worker_id) if is_token(worker_id) else None
    if worker is None:
        raise HTTPException(404, detail=f"worker {worker_id} not found")
    return worker
