"""Worker routes: the fleet as the projection sees it, with live heartbeat facts; an operator's
drain, disable and enable."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import Field

from events.ids import is_token
from events.worker import AdminState
from projections import queries
from services.api import as_of
from services.api.auth import Caller, caller
from services.api.deps import query, settle, store
from services.api.models import Strict
from services.api.worker_commands import change_state

router = APIRouter(prefix="/workers", tags=["workers"])


class ReasonIn(Strict):
    """Why an operator drains, disables or enables the worker (kept in its `state_changed`)."""

    reason: Annotated[str, Field(max_length=1000)] = ""


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


async def _change(
    worker_id: str, request: Request, who: Caller, target: AdminState, body: ReasonIn | None
) -> dict[str, Any]:
    if not is_token(worker_id):
        raise HTTPException(404, detail=f"worker {worker_id} not found")
    reason = body.reason if body else ""
    seq = await change_state(store(request), who.domain, worker_id, who.actor, target, reason)
    await settle(request, seq, id=worker_id)
    return await get_worker(worker_id, request, who, None)


@router.post("/{worker_id}/drain", summary="Drain: no new jobs; those it runs finish; it stays registered")
async def drain(
    worker_id: str, request: Request, body: ReasonIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await _change(worker_id, request, who, "draining", body)


@router.post("/{worker_id}/disable", summary="Disable: out of service, no new jobs until enabled")
async def disable(
    worker_id: str, request: Request, body: ReasonIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await _change(worker_id, request, who, "disabled", body)


@router.post("/{worker_id}/enable", summary="Enable: takes new jobs again (a no-op if it does)")
async def enable(
    worker_id: str, request: Request, body: ReasonIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await _change(worker_id, request, who, "active", body)
