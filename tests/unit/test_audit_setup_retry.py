"""The audit's set-up requests (stream info, the consumer) ride out a leader election: a
timeout or a 503 is tried again until a deadline; a missing stream is not."""

from __future__ import annotations

import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError, ServiceUnavailableError

from services.audit.reader import retried


async def test_timeouts_and_503s_are_tried_again_until_an_answer() -> None:
    failures: list[Exception] = [NatsTimeout(), ServiceUnavailableError()]

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "info"

    assert await retried(call, deadline_s=10) == "info"
    assert failures == []


async def test_a_missing_stream_is_not_tried_again() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise NotFoundError()

    with pytest.raises(NotFoundError):
        await retried(call, deadline_s=10)
    assert calls == 1


async def test_past_the_deadline_the_last_error_is_raised() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise NatsTimeout()

    with pytest.raises(NatsTimeout):
        await retried(call, deadline_s=0.3)
    assert calls >= 1
