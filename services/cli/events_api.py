"""`jobstream events tail --api`: one domain's events through the API's SSE stream, for any token.

The broker gives a domain token's login no JetStream consumer, so a domain follows its own log
through `GET /api/v1/events`, which the API scopes to the caller's domain like every route. The
stream carries each event's sequence (`id`), type (`event`) and payload (`data`); the subject is
put back together from the type and the payload's ids, the time is the event's own `at`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from events.reference import AGGREGATES, event_types
from services.cli.client import Client
from services.cli.event_records import Record, parse_iso_ns

# The aggregates each event type can belong to, in the order their unions name them.
_AGGREGATES_OF: dict[str, list[str]] = {}
for _aggregate, (_union, _, _) in AGGREGATES.items():
    for _cls in event_types(_union):
        _AGGREGATES_OF.setdefault(str(_cls.__struct_config__.tag), []).append(_aggregate)


def subject_of(type_: str, payload: dict[str, Any]) -> str:
    """The event subject of a payload: the aggregate among those its type belongs to whose id field
    the payload holds, the most specific first (a schedule's `fired` names a job as well, and a
    job's `submitted` may name its schedule, but `submitted` is no schedule type)."""
    domain = str(payload.get("domain", ""))
    candidates = _AGGREGATES_OF.get(type_, [])
    for aggregate in ("template", "schedule", "job", "worker", "domain"):
        if aggregate not in candidates:
            continue
        id_field = AGGREGATES[aggregate][2]
        if payload.get(id_field) is None:
            continue
        subject = f"ev.{domain}.{aggregate}.{payload[id_field]}.{type_}"
        if aggregate == "job" and type_ == "dispatched":
            subject += f".{payload.get('worker_id', '')}"
        return subject
    return f"ev.{domain}.unknown.-.{type_}"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a last `>` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for n, token in enumerate(want):
        if token == ">":
            return len(have) > n
        if n >= len(have) or (token != "*" and token != have[n]):
            return False
    return len(want) == len(have)


def _record(seq: int, type_: str, data: str) -> Record:
    raw = data.encode()
    try:
        payload = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    try:
        at = parse_iso_ns(str(payload.get("at", "")))
    except ValueError:
        at = 0
    return Record("EVENTS", seq, subject_of(type_, payload), at, {}, raw)


def follow(client: Client, since: int | None) -> Iterator[Record]:
    """The domain's events from `since` (a sequence; None: only new ones) as they land; the
    stream's keep-alive comments and frames without a sequence are not events."""
    params = {"since": since} if since is not None else {}
    for id_, type_, data in client.sse_raw("/events", **params):
        if id_.isdigit() and int(id_):
            yield _record(int(id_), type_, data)
