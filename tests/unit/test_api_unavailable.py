"""A broker that does not answer for sure is a 503 with Retry-After, never a bare 500."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from nats.errors import NoRespondersError

from events.store import AppendError, AppendUncertain
from services.api import errors


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.post("/jobs")
    async def submit() -> None:
        raise exc

    return app


async def post(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/jobs")


async def test_uncertain_append_is_503_with_retry_after() -> None:
    last = AppendError(503, None, "no stream answers this subject")
    response = await post(app_raising(AppendUncertain("ev.blue.job.j1.submitted", last, True)))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_S)
    body = response.json()
    assert body["error"] == "broker_unavailable"
    assert "Idempotency-Key" in body["detail"] and "unavailable" in body["detail"]


async def test_no_responders_on_a_read_is_503_too() -> None:
    response = await post(app_raising(NoRespondersError()))
    assert response.status_code == 503 and "Retry-After" in response.headers
