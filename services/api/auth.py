"""Who is calling and for which domain: resolved once, as a dependency."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from events.ids import is_domain

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    actor: str
    domain: str
    admin: bool


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    x_domain: str | None = Header(default=None),
    domain: str | None = Query(default=None, description="domain to act on (admin token only)"),
) -> Caller:
    if credentials is None:
        raise _unauthorized("missing bearer token")
    settings = request.app.state.settings
    if not hmac.compare_digest(credentials.credentials.encode(), settings.admin_token.encode()):
        raise _unauthorized("invalid token")
    chosen = x_domain or domain or settings.default_domain
    if not is_domain(chosen):
        raise HTTPException(400, detail=f"invalid domain name {chosen!r}")
    return Caller(actor="admin", domain=chosen, admin=True)
