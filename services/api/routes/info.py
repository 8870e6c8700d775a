"""Who the caller is and what this API is connected to: what `jobstream status` reports."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Request

from services.api.auth import Caller, caller
from services.api.deps import projector

router = APIRouter(tags=["info"])


def public_url(url: str) -> str:
    """The broker URL without its login: the API's own password never leaves the process."""
    parts = urlsplit(url.split(",")[0])
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "", "", ""))


@router.get("/info", summary="The caller (domain, admin or not), versions, broker URL and read-model lag")
async def info(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    nc = request.app.state.nc
    return {
        "version": version("jobstream"),
        "domain": who.domain,
        "admin": who.admin,
        "actor": who.actor,
        "broker": {
            "url": public_url(request.app.state.settings.nats_url),
            "connected": bool(nc.is_connected),
            "server_version": nc._server_info.get("version") if nc.is_connected else None,
        },
        "projection_lag": await projector(request).lag(),
    }
