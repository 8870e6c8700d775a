"""Refuses oversized or non-UTF-8 request bodies before they reach a route."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.settings import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def limit_for(path: str) -> int:
    return MAX_BATCH_BODY_BYTES if path.endswith("/batch") else MAX_BODY_BYTES


class BodyLimit:
    """Reads a body up to its limit, checks it is UTF-8, then hands it on.

    Checking here, not in the route, matters: FastAPI turns any error while reading a
    body into a bare 400 "error parsing the body" that names nothing, and JSON must be
    UTF-8 (RFC 8259)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _refuse(send, 413, "body_too_large", f"request body is larger than {limit} bytes")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, 413, "body_too_large", f"request body is larger than {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            detail = f"body: not valid UTF-8 at byte {exc.start}; JSON must be UTF-8"
            await _refuse(send, 422, "invalid_request", detail)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
