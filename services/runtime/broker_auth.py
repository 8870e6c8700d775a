"""The nats-server accounts block: what jobstream's services and each domain token may do.

Two accounts. JOBSTREAM holds the streams and jobstream's service login. TENANTS holds one
login per live domain token and reaches JOBSTREAM only through fixed imports, so:

- what a token publishes for the streams arrives at broker-auth's ingress (`in.…`), which
  checks it and re-publishes it with only the headers a worker needs;
- replies cross accounts on server-made `_R_` subjects: a token cannot aim a JetStream
  acknowledgement or delivery at a stream by choosing a reply subject (it can in a single
  account; checked on nats-server 2.15);
- per-login subject permissions then narrow the imports to the token's own domain, and to
  the pull consumers of the workers registered in it.

Not prevented: nats-server does not check a publisher's reply subject against its
permissions, so within TENANTS a token can have an answer (a read page, its own delivery,
a status) sent to another domain's *live* subjects. Such a message never reaches a stream,
and every jobstream subscriber decodes what it gets and checks it names its own domain.

Accounts are fixed at start; a reload changes only TENANTS' users. (Accounts added by a
reload did not get working service imports on nats-server 2.15.1, so one account per
domain was not an option.) Pure: rendered from domain states and registered workers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Set
from datetime import datetime
from pathlib import Path

import bcrypt

from events.domain import DomainState
from events.streams import EVENTS_STREAM, worker_consumer_name
from events.subjects import INGRESS_PREFIX

SERVICE_USER = "jobstream"
SERVICE_ACCOUNT = "JOBSTREAM"
TENANT_ACCOUNT = "TENANTS"

# What a worker appends: its job reports and its own registration.
WORKER_JOB_EVENTS = (
    "started",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "retry_scheduled",
    "requeued",
)
WORKER_EVENTS = ("registered", "stopped")
_PULL = f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}"
_ACK = f"$JS.ACK.{EVENTS_STREAM}"


_BCRYPT = re.compile(r"^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$")


def is_bcrypt(value: str) -> bool:
    return bool(_BCRYPT.match(value))


# The service password is 192 random bits (or NATS_SERVICE_PASSWORD, which should be as
# random), so the hash's cost adds nothing against guessing it; but nats-server pays that cost
# for each service connection at every connect and every reload, so it is kept at the minimum.
SERVICE_BCRYPT_ROUNDS = 4


def password_hash(password: str) -> str:
    """What the config keeps for a service login: a bcrypt hash (nats-server takes it as the
    password), never the password, so the file under the data dir is no usable credential."""
    if is_bcrypt(password):
        return password
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=SERVICE_BCRYPT_ROUNDS)).decode()


def inbox_prefix(domain: str) -> str:
    """Replies to a domain's logins arrive here; no other domain may subscribe to it."""
    return f"_INBOX_{domain}"


def _reports(domain: str) -> list[str]:
    """What a worker of `domain` publishes into the streams (`*`: any domain, for the imports,
    where each reaches broker-auth's ingress as `in.<subject>`)."""
    return [
        *(f"ev.{domain}.job.*.{t}" for t in WORKER_JOB_EVENTS),
        *(f"ev.{domain}.worker.*.{t}" for t in WORKER_EVENTS),
        f"hb.{domain}.*",
        f"log.{domain}.*.*",
    ]


# Straight to jobstream's services or to JetStream's pull API, headers and all: safe, since
# these carry no stream headers that matter and their replies cross on server-made subjects.
_DIRECT_SERVICES = ["rd.*.*.*", f"{_PULL}.*", f"{_ACK}.>"]
_IMPORTED_STREAMS = ["ev.>", "log.>", "hb.>"]


def domain_permissions(domain: str, workers: Set[str] = frozenset()) -> dict[str, object]:
    """A token may read its domain, report as its domain's workers and pull their dispatches."""
    publish = [*_reports(domain), f"rd.{domain}.*.*"]
    for worker_id in sorted(workers):
        name = worker_consumer_name(domain, worker_id)
        publish += [f"{_PULL}.{name}", f"{_ACK}.{name}.>"]
    return {
        "publish": {"allow": publish},
        "subscribe": {
            "allow": [f"ev.{domain}.>", f"log.{domain}.>", f"hb.{domain}.>", f"{inbox_prefix(domain)}.>"]
        },
    }


def render(
    service_users: Mapping[str, str],
    domains: Mapping[str, DomainState],
    now: datetime,
    workers: Mapping[str, Set[str]] | None = None,
) -> str:
    """The whole `accounts` block: service logins (name to bcrypt hash; a plain password is
    hashed here, with a fresh salt, so pass the hash to get the same text twice), then one
    login per live token.

    `workers` maps a domain to its registered worker ids, whose consumers its tokens may pull.
    """
    tenants: list[dict[str, object]] = []
    for state in sorted(domains.values(), key=lambda d: d.name):
        if state.deleted or state.disabled:
            continue
        permissions = domain_permissions(state.name, (workers or {}).get(state.name, frozenset()))
        for token in state.tokens:
            if token.secret_bcrypt and token.usable(now):
                tenants.append(
                    {"user": f"jst_{token.id}", "password": token.secret_bcrypt, "permissions": permissions}
                )
    exports: list[dict[str, object]] = [{"stream": s} for s in _IMPORTED_STREAMS]
    exports += [{"service": f"{INGRESS_PREFIX}.>"}]
    exports += [
        {"service": s, **({"response_type": "stream"} if s.startswith(_PULL) else {})}
        for s in _DIRECT_SERVICES
    ]
    imports: list[dict[str, object]] = [
        {"stream": {"account": SERVICE_ACCOUNT, "subject": s}} for s in _IMPORTED_STREAMS
    ]
    imports += [
        {"service": {"account": SERVICE_ACCOUNT, "subject": f"{INGRESS_PREFIX}.{s}"}, "to": s}
        for s in _reports("*")
    ]
    imports += [{"service": {"account": SERVICE_ACCOUNT, "subject": s}} for s in _DIRECT_SERVICES]
    accounts = {
        SERVICE_ACCOUNT: {
            "jetstream": "enabled",
            "users": [{"user": name, "password": password_hash(pw)} for name, pw in service_users.items()],
            "exports": exports,
        },
        TENANT_ACCOUNT: {"users": tenants, "imports": imports},
    }
    return "accounts " + json.dumps(accounts, indent=2) + "\n"


def next_change(domains: Mapping[str, DomainState], now: datetime) -> datetime | None:
    """When a token's expiry will change the rendering next, if ever."""
    ends = [
        t.expires_at
        for d in domains.values()
        for t in d.tokens
        if t.expires_at is not None and t.expires_at > now and t.revoked_at is None
    ]
    return min(ends, default=None)


def write(path: Path, text: str) -> None:
    """Replace the file atomically, readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600, exist_ok=True)
    tmp.chmod(0o600)
    tmp.write_text(text)
    tmp.replace(path)
