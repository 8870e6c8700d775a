"""Rate limits and event-stream caps per token, on an API configured with tight limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    limits = {"rate_limit_per_s": 1, "rate_limit_burst": 5, "streams_per_token": 1}
    with api_client(nats_server.url, tmp_path_factory.mktemp("limits-api"), **limits) as client:
        yield client


def test_requests_over_the_rate_get_429_with_retry_after(api: TestClient) -> None:
    codes = [api.get("/api/v1/workers", headers=AUTH).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and 429 in codes[5:], codes
    r = api.get("/api/v1/workers", headers=AUTH)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert api.get("/health").status_code == 200  # unauthenticated probes are not limited


def test_event_streams_are_capped_per_token(api: TestClient) -> None:
    limiter = api.app.state.limiter  # type: ignore[attr-defined]
    limiter.rate = 0  # this test is about streams, not the request rate
    with api.stream("GET", "/api/v1/events", headers=AUTH) as first:
        assert first.status_code == 200
        second = api.get("/api/v1/events", headers=AUTH)
        assert second.status_code == 429 and "event streams" in second.json()["detail"]
    assert api.app.state.streams.open == {}  # type: ignore[attr-defined]
