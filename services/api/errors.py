"""One mapping from refusals to HTTP answers, with messages that name the problem."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from events.base import Conflict, DomainError, NotFound
from events.firetimes import ScheduleError
from services.api.models import UNION_TAGS

STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, ScheduleError: 422}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", *UNION_TAGS)]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=status)

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
