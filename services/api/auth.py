"""Who is calling and for which domain: resolved once per request, as a dependency.

The admin token acts on any domain (chosen with `X-Domain` or `?domain=`, default
`prod`); a domain token acts on its own domain only. A domain token naming another
domain gets 404, exactly like a domain that does not exist, so tokens cannot probe
which domains exist.
"""

from __future__ import annotations

import hmac
import math
import time
from dataclasses import dataclass

from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from events.base import utcnow
from events.domain import check_secret, parse_token
from events.ids import is_domain
from services.api.deps import projector

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    actor: str
    domain: str
    admin: bool
    token_id: str | None = None

    @property
    def limit_key(self) -> str:
        """What rate limits and stream caps count by: the token used."""
        return self.token_id or "admin"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _not_found(domain: str) -> HTTPException:
    return HTTPException(404, detail=f"domain {domain} not found")


@dataclass(frozen=True)
class Identity:
    """Whose token this is, before any domain is chosen: the admin, or one domain's token."""

    admin: bool
    domain: str | None = None
    token_id: str | None = None


def identify(request: Request, token: str) -> Identity:
    """Check the token itself (401 if it is no good); done once per request, by RequireToken."""
    if hmac.compare_digest(token.encode(), request.app.state.settings.admin_token.encode()):
        return Identity(admin=True)
    parsed = parse_token(token)
    found = projector(request).tokens.get(parsed[0]) if parsed else None
    if parsed is None or found is None or not check_secret(found[1], parsed[1]):
        raise _unauthorized("invalid token")
    domain, info = found
    if not info.usable(utcnow()):
        raise _unauthorized("token revoked or expired")
    state = projector(request).domains.get(domain)
    if state is None or state.deleted:
        raise _unauthorized("invalid token")
    request.app.state.token_last_used[info.id] = time.time()
    return Identity(admin=False, domain=domain, token_id=info.id)


def authorize(request: Request, who: Identity, wanted: str | None) -> Caller:
    """Choose the domain the request acts on: any for the admin, only its own for a token."""
    if wanted is not None and not is_domain(wanted):
        raise HTTPException(400, detail=f"invalid domain name {wanted!r}")
    domains = projector(request).domains
    if who.admin:
        chosen = wanted or request.app.state.settings.default_domain
        state = domains.get(chosen)
        if state is None or state.deleted:
            raise _not_found(chosen)
        return Caller(actor="admin", domain=chosen, admin=True)
    assert who.domain is not None and who.token_id is not None
    if wanted is not None and wanted != who.domain:
        raise _not_found(wanted)
    state = domains.get(who.domain)
    if state is None or state.deleted:
        raise _unauthorized("invalid token")
    if state.disabled:
        raise HTTPException(403, detail=f"domain {who.domain} is disabled")
    return Caller(actor=f"token:{who.token_id}", domain=who.domain, admin=False, token_id=who.token_id)


async def caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    x_domain: str | None = Header(default=None),
    domain: str | None = Query(default=None, description="domain to act on (admin token only)"),
) -> Caller:
    if credentials is None:
        raise _unauthorized("missing bearer token")
    identity = request.scope.get("state", {}).get("identity")
    if identity is None:  # not behind RequireToken
        identity = identify(request, credentials.credentials)
    who = authorize(request, identity, x_domain or domain)
    wait = request.app.state.limiter.take(who.limit_key, time.monotonic())
    if wait > 0:
        raise HTTPException(
            429, detail="too many requests for this token", headers={"Retry-After": str(math.ceil(wait))}
        )
    return who


async def admin(who: Caller = Depends(caller)) -> Caller:
    if not who.admin:
        raise HTTPException(403, detail="this needs the admin token")
    return who


class RequireToken:
    """Refuses requests to the API without a valid token before anything else reads them,
    so an unauthenticated caller learns nothing, not even how its body would be validated."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            request = Request(scope)
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            problem = None
            if scheme.lower() != "bearer" or not token.strip():
                problem = "missing bearer token"
            else:
                try:
                    scope.setdefault("state", {})["identity"] = identify(request, token.strip())
                except HTTPException as exc:
                    problem = str(exc.detail)
            if problem is not None:
                response = JSONResponse(
                    {"error": "unauthorized", "detail": problem}, status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
