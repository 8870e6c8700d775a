"""Per-token request rate limits and caps on open event streams, kept in each API process."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_TRACKED = 100_000


@dataclass
class Bucket:
    """A token bucket: `burst` requests at once, refilled at `rate` per second."""

    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 if the request may go ahead, else the seconds until it could (for Retry-After)."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(self.burst, now)
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


class StreamSlots:
    """How many event streams each token has open, up to a cap."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self.open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        if self.open.get(key, 0) >= self.per_key:
            return False
        self.open[key] = self.open.get(key, 0) + 1
        return True

    def release(self, key: str) -> None:
        left = self.open.get(key, 0) - 1
        if left > 0:
            self.open[key] = left
        else:
            self.open.pop(key, None)
