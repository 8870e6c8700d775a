"""The nats-server authorization block: jobstream's service login, and one login per live domain
token that may read only its own domain's subjects. Pure: rendered from domain states."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from events.domain import DomainState

SERVICE_USER = "jobstream"


def domain_permissions(domain: str) -> dict[str, object]:
    """Read-only for now: the domain's events, job output and heartbeats, and replies to itself."""
    return {
        "publish": {"allow": ["_INBOX.>"]},
        "subscribe": {"allow": [f"ev.{domain}.>", f"log.{domain}.>", f"hb.{domain}.>", "_INBOX.>"]},
    }


def render(service_password: str, domains: dict[str, DomainState], now: datetime) -> str:
    users: list[dict[str, object]] = [{"user": SERVICE_USER, "password": service_password}]
    for state in sorted(domains.values(), key=lambda d: d.name):
        if state.deleted or state.disabled:
            continue
        for token in state.tokens:
            if token.secret_bcrypt and token.usable(now):
                users.append(
                    {
                        "user": f"jst_{token.id}",
                        "password": token.secret_bcrypt,
                        "permissions": domain_permissions(state.name),
                    }
                )
    return "authorization {\n  users = " + json.dumps(users, indent=2) + "\n}\n"


def next_change(domains: dict[str, DomainState], now: datetime) -> datetime | None:
    """When a token's expiry will change the rendering next, if ever."""
    ends = [
        t.expires_at
        for d in domains.values()
        for t in d.tokens
        if t.expires_at is not None and t.expires_at > now and t.revoked_at is None
    ]
    return min(ends, default=None)


def write(path: Path, text: str) -> bool:
    """Replace the file atomically, readable by its owner only; False when nothing changed."""
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600, exist_ok=True)
    tmp.chmod(0o600)
    tmp.write_text(text)
    tmp.replace(path)
    return True
