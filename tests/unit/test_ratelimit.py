"""Token buckets and stream slots, with a hand-moved clock."""

from __future__ import annotations

import pytest

from services.api.ratelimit import RateLimiter, StreamSlots


def test_bucket_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.take("t", 0.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("t", 0.0) == pytest.approx(0.5)  # one token comes back every 0.5 s
    assert limiter.take("t", 0.5) == 0
    assert limiter.take("other", 0.5) == 0  # buckets are per token
    assert limiter.take("t", 10.0) == 0 and limiter.take("t", 10.0) == 0 and limiter.take("t", 10.0) == 0
    assert limiter.take("t", 10.0) > 0  # refill stops at the burst size


def test_zero_rate_means_no_limit() -> None:
    limiter = RateLimiter(rate_per_s=0, burst=0)
    assert all(limiter.take("t", 0.0) == 0 for _ in range(1000))


def test_stream_slots() -> None:
    slots = StreamSlots(per_key=2)
    assert slots.acquire("a") and slots.acquire("a") and not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.acquire("a")
    slots.release("a")
    slots.release("a")
    slots.release("b")
    assert slots.open == {}
