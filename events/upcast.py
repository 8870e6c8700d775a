"""Upcasting: payloads of an older version of an event type, read as the current type.

The log is never rewritten, so when an event type's payload changes shape (a field renamed,
split, or given another meaning) the type gets a new version: its class sets `v` to the next
number, and a pure function registered here turns the previous version's JSON object into
the new one's. `codec.decode_event` decodes a current payload straight into its type; only an
older one (its `v` below the current, or failing to decode as the current type) is decoded
to a dict, upcast one version at a time, and decoded again. A payload newer than the code
knows is refused (upgrade the reader), never half-read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events.base import SCHEMA_VERSION

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_upcasters: dict[tuple[str, str, int], Upcaster] = {}  # (aggregate, type, from version)
_current: dict[tuple[str, str], int] = {}


class UpcastError(ValueError):
    """A payload whose version no upcaster chain reaches the current one from."""


def upcaster(aggregate: str, type_: str, from_v: int) -> Callable[[Upcaster], Upcaster]:
    """Register `fn` as turning `type_` payloads of version `from_v` into version `from_v + 1`."""

    def register(fn: Upcaster) -> Upcaster:
        key = (aggregate, type_, from_v)
        if key in _upcasters:
            raise ValueError(f"two upcasters for {aggregate}.{type_} v{from_v}")
        _upcasters[key] = fn
        _current[(aggregate, type_)] = max(_current.get((aggregate, type_), SCHEMA_VERSION), from_v + 1)
        return fn

    return register


def current_version(aggregate: str, type_: str) -> int:
    return _current.get((aggregate, type_), SCHEMA_VERSION)


def is_current(aggregate: str, type_: str, v: int) -> bool:
    """The common case, checked on every decode: one dict lookup."""
    return v == _current.get((aggregate, type_), SCHEMA_VERSION)


def upcast(aggregate: str, payload: Payload) -> Payload:
    """The payload in the current version of its type (unchanged if it is current already)."""
    type_ = payload.get("type")
    v = payload.get("v", SCHEMA_VERSION)
    if not isinstance(type_, str):
        raise UpcastError("payload has no event type")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise UpcastError(f"{aggregate}.{type_}: version {v!r} is not a positive integer")
    current = current_version(aggregate, type_)
    if v > current:
        raise UpcastError(f"{aggregate}.{type_}: version {v} is newer than this code reads (v{current})")
    while v < current:
        fn = _upcasters.get((aggregate, type_, v))
        if fn is None:
            raise UpcastError(f"{aggregate}.{type_}: no upcaster from version {v}")
        payload = {**fn(payload), "v": v + 1}
        v += 1
    return payload
