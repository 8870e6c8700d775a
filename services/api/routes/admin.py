"""Admin routes: domains and their tokens. Only the admin token may use them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from events.domain import (
    DomainState,
    decide_create,
    decide_delete,
    decide_disable,
    decide_enable,
    decide_revoke,
)
from events.ids import is_token
from events.streams import drop_logs, provision_logs
from services.api import domain_commands as commands
from services.api.auth import Caller, admin
from services.api.deps import js, projector, settle, store
from services.api.models import Strict

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin/domains", tags=["admin"])


class DomainIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    description: Annotated[str, Field(max_length=1000)] = ""


class TokenIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]


class RotateIn(Strict):
    overlap_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 3600.0


class ReasonIn(Strict):
    reason: Annotated[str, Field(max_length=1000)] = ""


class NewTokenOut(BaseModel):
    id: str
    name: str
    token: str = Field(description="shown this once; only its sha-256 is kept")


def _iso(epoch_s: float | None) -> str | None:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat() if epoch_s is not None else None


def _token_view(request: Request, state: DomainState) -> list[dict[str, Any]]:
    used = request.app.state.token_last_used
    return [
        {
            "id": t.id,
            "name": t.name,
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            "replaced_by": t.replaced_by,
            "last_used_at": _iso(used.get(t.id)),
        }
        for t in state.tokens
    ]


def _view(request: Request, name: str, *, deleted_ok: bool = False) -> dict[str, Any]:
    state = projector(request).domains.get(name)
    if state is None or (state.deleted and not deleted_ok):
        raise HTTPException(404, detail=f"domain {name} not found")
    return {
        "name": state.name, "status": state.status, "description": state.description,
        "disabled_reason": state.disabled_reason, "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(), "tokens": _token_view(request, state),
    }  # fmt: skip


@router.post("", status_code=201, summary="Create a domain; its first token is in the answer, once")
async def create(body: DomainIn, request: Request, who: Caller = Depends(admin)) -> dict[str, Any]:
    # The output stream first: once the domain exists, its first token is shown this once, and
    # its workers' output must have somewhere to go.
    decide_create(body.name, who.actor, body.description)  # a bad name is refused before anything
    await provision_logs(js(request), [body.name])
    token, seq = await commands.create(store(request), body.name, who.actor, body.description)
    first = NewTokenOut(id=token.event.token_id, name=token.event.name, token=token.value)
    await settle(request, seq, name=body.name, token=first.model_dump())
    return {**_view(request, body.name), "token": first.model_dump()}


@router.get("", summary="Every domain, with its status and tokens (never their secrets)")
async def list_domains(request: Request, who: Caller = Depends(admin)) -> list[dict[str, Any]]:
    names = sorted(n for n, d in projector(request).domains.items() if not d.deleted)
    return [_view(request, n) for n in names]


@router.get("/{name}", summary="One domain")
async def get_domain(name: str, request: Request, who: Caller = Depends(admin)) -> dict[str, Any]:
    return _view(request, name)


@router.post("/{name}/tokens", status_code=201, summary="Add a token; its value is in the answer, once")
async def add_token(name: str, body: TokenIn, request: Request, who: Caller = Depends(admin)) -> NewTokenOut:
    token, seq = await commands.issue(store(request), name, body.name, who.actor)
    out = NewTokenOut(id=token.event.token_id, name=token.event.name, token=token.value)
    await settle(request, seq, domain=name, **out.model_dump())
    return out


@router.get("/{name}/tokens", summary="A domain's tokens: id, name, created, expiry, revocation, last use")
async def list_tokens(name: str, request: Request, who: Caller = Depends(admin)) -> list[dict[str, Any]]:
    return _view(request, name)["tokens"]  # type: ignore[no-any-return]


@router.delete("/{name}/tokens/{token_id}", summary="Revoke a token: it stops working at once")
async def revoke(name: str, token_id: str, request: Request, who: Caller = Depends(admin)) -> dict[str, Any]:
    if not is_token(token_id):
        raise HTTPException(404, detail=f"token {token_id} not found")
    seq = await commands.change(store(request), name, lambda s: [decide_revoke(s, token_id, who.actor)])
    await settle(request, seq, name=name)
    return _view(request, name)


@router.post("/{name}/tokens/{token_id}/rotate", status_code=201,
             summary="A new token; the old one keeps working for overlap_s seconds")  # fmt: skip
async def rotate(
    name: str, token_id: str, request: Request, body: RotateIn | None = None, who: Caller = Depends(admin)
) -> NewTokenOut:
    overlap = body.overlap_s if body else RotateIn().overlap_s
    token, seq = await commands.rotate(store(request), name, token_id, overlap, who.actor)
    out = NewTokenOut(id=token.event.token_id, name=token.event.name, token=token.value)
    await settle(request, seq, domain=name, **out.model_dump())
    return out


@router.post("/{name}/disable", summary="Refuse the domain's tokens (403) until enabled; data stays")
async def disable(
    name: str, request: Request, body: ReasonIn | None = None, who: Caller = Depends(admin)
) -> dict[str, Any]:
    reason = body.reason if body else ""
    seq = await commands.change(store(request), name, lambda s: [decide_disable(s, who.actor, reason)])
    await settle(request, seq, name=name)
    return _view(request, name)


@router.post("/{name}/enable", summary="Accept the domain's tokens again")
async def enable(name: str, request: Request, who: Caller = Depends(admin)) -> dict[str, Any]:
    seq = await commands.change(store(request), name, lambda s: [decide_enable(s, who.actor)])
    await settle(request, seq, name=name)
    return _view(request, name)


@router.delete("/{name}", summary="Delete a domain: gone for every interface; its events stay in the log")
async def delete(name: str, request: Request, who: Caller = Depends(admin)) -> dict[str, Any]:
    seq = await commands.change(store(request), name, lambda s: [decide_delete(s, who.actor)])
    try:
        await drop_logs(js(request), name)
    except Exception as exc:  # the domain is gone; its output then ages out instead
        log.warning("domain %s deleted, but its output stream stays until it ages out: %r", name, exc)
    await settle(request, seq, name=name)
    return _view(request, name, deleted_ok=True)
