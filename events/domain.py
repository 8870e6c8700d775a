"""The domain aggregate: a tenant, its state and its API tokens (only their hashes, ever).

A token reads `jst_<token id>_<secret>`. The id finds the token without comparing
secrets; the secret's sha-256 is what the log keeps, and it is compared in constant time.
Events live on `ev.<domain>.domain.<domain>.<type>`, so a domain's own subjects hold them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import bcrypt
import msgspec
from msgspec import structs

from events.base import Conflict, DomainError, Event, NotFound
from events.ids import is_domain, new_id

TOKEN_PREFIX = "jst"
SECRET_BYTES = 32
MAX_OVERLAP_S = 30 * 86400.0
DEFAULT_DOMAIN = "prod"
BCRYPT_ROUNDS = 10  # ~60 ms here, once per token issued; nats-server pays it once per connection


class DomainEvent(Event, frozen=True, kw_only=True):
    """`domain` (the envelope field) is the aggregate's own id."""


class DomainCreated(DomainEvent, frozen=True, kw_only=True, tag="created"):
    description: str = ""


class TokenIssued(DomainEvent, frozen=True, kw_only=True, tag="token_issued"):
    token_id: str
    name: str
    secret_sha256: str
    expires_at: datetime | None = None
    # bcrypt of the secret, for the broker: nats-server checks a domain's logins against it.
    secret_bcrypt: str | None = None


class TokenRevoked(DomainEvent, frozen=True, kw_only=True, tag="token_revoked"):
    token_id: str


class TokenExpiring(DomainEvent, frozen=True, kw_only=True, tag="token_expiring"):
    """A rotation: the old token keeps working until `expires_at`, then stops."""

    token_id: str
    expires_at: datetime
    replaced_by: str


class DomainDisabled(DomainEvent, frozen=True, kw_only=True, tag="disabled"):
    reason: str = ""


class DomainEnabled(DomainEvent, frozen=True, kw_only=True, tag="enabled"):
    pass


class DomainDeleted(DomainEvent, frozen=True, kw_only=True, tag="deleted"):
    """The domain stops existing for every interface; its events stay in the log."""


AnyDomainEvent = (
    DomainCreated
    | TokenIssued
    | TokenRevoked
    | TokenExpiring
    | DomainDisabled
    | DomainEnabled
    | DomainDeleted
)


class TokenInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    name: str
    secret_sha256: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    replaced_by: str | None = None
    secret_bcrypt: str | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class DomainState(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    disabled: bool = False
    disabled_reason: str | None = None
    deleted: bool = False
    tokens: tuple[TokenInfo, ...] = ()

    @property
    def status(self) -> str:
        return "deleted" if self.deleted else "disabled" if self.disabled else "active"

    def token(self, token_id: str) -> TokenInfo | None:
        return next((t for t in self.tokens if t.id == token_id), None)


def _replace_token(state: DomainState, token_id: str, **changes: object) -> tuple[TokenInfo, ...]:
    return tuple(structs.replace(t, **changes) if t.id == token_id else t for t in state.tokens)


def evolve_domain(state: DomainState | None, event: AnyDomainEvent) -> DomainState | None:
    """Fold one event into a domain's state. Never raises; nothing follows a deletion."""
    if state is None:
        if isinstance(event, DomainCreated):
            return DomainState(
                name=event.domain, created_at=event.at, updated_at=event.at, description=event.description
            )
        return None
    if state.deleted or isinstance(event, DomainCreated):
        return state
    at = event.at
    match event:
        case TokenIssued(token_id=tid, name=name, secret_sha256=digest, expires_at=expires):
            token = TokenInfo(tid, name, digest, at, expires, secret_bcrypt=event.secret_bcrypt)
            return structs.replace(state, tokens=(*state.tokens, token), updated_at=at)
        case TokenRevoked(token_id=tid):
            return structs.replace(state, tokens=_replace_token(state, tid, revoked_at=at), updated_at=at)
        case TokenExpiring(token_id=tid, expires_at=expires, replaced_by=new):
            tokens = _replace_token(state, tid, expires_at=expires, replaced_by=new)
            return structs.replace(state, tokens=tokens, updated_at=at)
        case DomainDisabled(reason=reason):
            return structs.replace(state, disabled=True, disabled_reason=reason or None, updated_at=at)
        case DomainEnabled():
            return structs.replace(state, disabled=False, disabled_reason=None, updated_at=at)
        case DomainDeleted():
            return structs.replace(state, deleted=True, updated_at=at)
    return state


# ---- tokens -------------------------------------------------------------------------


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: `value` is shown once and never stored; the event keeps the hash."""

    value: str
    event: TokenIssued


def make_token(domain: str, name: str, actor: str, expires_at: datetime | None = None) -> NewToken:
    token_id = new_id()
    secret = secrets.token_urlsafe(SECRET_BYTES)
    event = TokenIssued(
        domain=domain, actor=actor, correlation_id=domain, token_id=token_id, name=name,
        secret_sha256=sha256_hex(secret), expires_at=expires_at,
        secret_bcrypt=bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode(),
    )  # fmt: skip
    return NewToken(f"{TOKEN_PREFIX}_{token_id}_{secret}", event)


def parse_token(value: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed domain token, else None."""
    prefix, sep, rest = value.partition("_")
    if prefix != TOKEN_PREFIX or not sep:
        return None
    token_id, sep, secret = rest.partition("_")
    if not sep or not token_id or not secret:
        return None
    return token_id, secret


def check_secret(token: TokenInfo, secret: str) -> bool:
    return hmac.compare_digest(token.secret_sha256, sha256_hex(secret))


# ---- decisions ----------------------------------------------------------------------


def decide_create(name: str, actor: str, description: str = "") -> DomainCreated:
    if not is_domain(name):
        raise DomainError(
            f"name: {name!r} is not a domain name: 1-63 of a-z, 0-9, _ and -, starting with a letter or digit"
        )
    return DomainCreated(domain=name, actor=actor, correlation_id=name, description=description)


def _alive(state: DomainState) -> None:
    if state.deleted:
        raise NotFound(f"domain {state.name} not found")


def decide_issue(state: DomainState, name: str, actor: str) -> NewToken:
    _alive(state)
    if not name or len(name) > 100:
        raise DomainError("name: a token needs a name of 1-100 characters")
    return make_token(state.name, name, actor)


def decide_revoke(state: DomainState, token_id: str, actor: str) -> TokenRevoked:
    _alive(state)
    token = state.token(token_id)
    if token is None:
        raise NotFound(f"token {token_id} not found in domain {state.name}")
    if token.revoked_at is not None:
        raise Conflict(f"token {token_id} is already revoked")
    return TokenRevoked(domain=state.name, actor=actor, correlation_id=state.name, token_id=token_id)


def decide_rotate(
    state: DomainState, token_id: str, overlap_s: float, actor: str, now: datetime
) -> tuple[NewToken, TokenExpiring]:
    """A new token with the old one's name; the old one works for `overlap_s` more seconds."""
    _alive(state)
    old = state.token(token_id)
    if old is None:
        raise NotFound(f"token {token_id} not found in domain {state.name}")
    if not old.usable(now):
        raise Conflict(f"token {token_id} is revoked or expired; issue a new one instead")
    if not 0 <= overlap_s <= MAX_OVERLAP_S:
        raise DomainError(f"overlap_s: must be between 0 and {MAX_OVERLAP_S:.0f}")
    new = make_token(state.name, old.name, actor)
    expiring = TokenExpiring(
        domain=state.name, actor=actor, correlation_id=state.name, token_id=token_id,
        expires_at=now + timedelta(seconds=overlap_s), replaced_by=new.event.token_id,
    )  # fmt: skip
    return new, expiring


def decide_disable(state: DomainState, actor: str, reason: str = "") -> DomainDisabled:
    _alive(state)
    if state.disabled:
        raise Conflict(f"domain {state.name} is already disabled")
    return DomainDisabled(domain=state.name, actor=actor, correlation_id=state.name, reason=reason)


def decide_enable(state: DomainState, actor: str) -> DomainEnabled:
    _alive(state)
    if not state.disabled:
        raise Conflict(f"domain {state.name} is not disabled")
    return DomainEnabled(domain=state.name, actor=actor, correlation_id=state.name)


def decide_delete(state: DomainState, actor: str) -> DomainDeleted:
    _alive(state)
    if state.name == DEFAULT_DOMAIN:
        raise Conflict(f"the default domain {DEFAULT_DOMAIN!r} cannot be deleted; disable it instead")
    return DomainDeleted(domain=state.name, actor=actor, correlation_id=state.name)
