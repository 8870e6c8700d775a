"""One mapping from refusals to HTTP answers, with messages that name the problem."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import ServiceUnavailableError

from events.base import Conflict, DomainError, NotFound
from events.firetimes import ScheduleError
from events.store import AppendUncertain
from services.api.deps import NotYetShown
from services.api.models import UNION_TAGS

STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, ScheduleError: 422}

# The broker did not answer for sure within the store's deadline (an election, a restart, a
# partition): the client should come back, not read a bare 500 as "the request is broken".
UNAVAILABLE: tuple[type[Exception], ...] = (
    AppendUncertain,
    NatsTimeout,
    NoRespondersError,
    NoServersError,
    ConnectionClosedError,
    ServiceUnavailableError,
)
RETRY_AFTER_S = 2
UNAVAILABLE_DETAIL = (
    "the event broker is unavailable right now, so the request may or may not have been applied; "
    "retry in a few seconds (a retry with the same Idempotency-Key is safe)"
)


def unavailable_response(exc: Exception) -> JSONResponse:
    """503 with Retry-After for a broker that did not answer for sure."""
    return JSONResponse(
        {"error": "broker_unavailable", "detail": f"{UNAVAILABLE_DETAIL}: {type(exc).__name__}"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", *UNION_TAGS)]
    return ".".join(parts) or "body"


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return unavailable_response(exc)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=status)

    for cls in UNAVAILABLE:
        app.add_exception_handler(cls, _unavailable)

    @app.exception_handler(NotYetShown)
    async def not_yet_shown(_: Request, exc: NotYetShown) -> JSONResponse:
        return JSONResponse(
            {"accepted": True, "seq": exc.seq, **exc.landed, "detail": str(exc)},
            status_code=202,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            field = _field(tuple(err.get("loc", ())))
            message = str(err.get("msg", "invalid"))
            if err.get("type") == "json_invalid":
                message = f"malformed JSON: {err.get('ctx', {}).get('error', message)}"
            problems.append({"field": field, "message": message, "type": err.get("type")})
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return JSONResponse(
            {"error": "invalid_request", "detail": summary, "problems": problems}, status_code=422
        )
