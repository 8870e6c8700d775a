"""Who the caller is and what this API is connected to: what `jobstream status` reports."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import APIRouter, Depends, Request

from services.api.auth import Caller, caller
from services.api.deps import projector
from services.runtime.connect import without_password

router = APIRouter(tags=["info"])


@router.get("/info", summary="The caller (domain, admin or not), versions, broker URL and read-model lag")
async def info(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    nc = request.app.state.nc
    return {
        "version": version("jobstream"),
        "domain": who.domain,
        "admin": who.admin,
        "actor": who.actor,
        "broker": {
            # The API's own login never leaves the process; one server is enough to reach it.
            "url": without_password(request.app.state.settings.nats_url).split(",")[0],
            "connected": bool(nc.is_connected),
            "server_version": nc._server_info.get("version") if nc.is_connected else None,
        },
        "projection_lag": await projector(request).lag(),
        # The log's sequence the read model has applied: a live view opens /events?since= one
        # past it, so nothing lands between what it read and what it is sent.
        "read_model_seq": projector(request).applied_seq,
    }
