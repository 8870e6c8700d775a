"""Which workers are gone: silent past the TTL while registered as active."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Liveness:
    domain: str
    worker_id: str
    active: bool
    last_beat: float  # monotonic time the last heartbeat arrived (or our start, as grace)


def silent(workers: Iterable[Liveness], now: float, ttl_s: float) -> list[Liveness]:
    return [w for w in workers if w.active and now - w.last_beat > ttl_s]
