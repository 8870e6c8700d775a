"""The API's SERVER spans, the root of a job's trace (or a child of the caller's `traceparent`).

FastAPI (0.165+) makes them itself once a TracerProvider is installed, as the outermost layer
of the app, with the route template as name; this only configures it. Streams are not traced
(the SSE event feed, followed logs): a span hours long that replays history says nothing, and
replaying history must make no spans. Neither are /health, /ready and /metrics, which probes
call every few seconds, nor the UI's files. No operation spans (dependencies, endpoint,
serialization) and no OTel metrics or logs: Prometheus has the counts, and each span costs.

With jobstream's default sampler, `HeadSampledApi` decides first (events/sampling.py): a
request whose trace is not sampled (a new trace the ratio leaves out, or a caller's
`traceparent` with flags 00) skips FastAPI's telemetry altogether, which would only make a
non-recording span at some 50 us a request; its trace context is made current instead, so the
job's appends still keep the trace id. Any other request gets FastAPI's SERVER span, a new
trace's with the trace id decided on.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry.context import Context, attach, detach
from starlette.types import Receive, Scope, Send

from events import sampling, tracecontext
from events.tracecontext import BAGGAGE, TRACEPARENT, TRACESTATE

STREAMS = ("/api/v1/events",)
UNSAMPLED = "jobstream.unsampled"  # scope key: decided not sampled ahead, so no SERVER span
_PROPAGATED = {name.encode(): name for name in (TRACEPARENT, TRACESTATE, BAGGAGE)}


def untraced(scope: MutableMapping[str, Any]) -> bool:
    if scope.get(UNSAMPLED):
        return True
    path: str = scope.get("path", "")
    if not path.startswith("/api/") or path in STREAMS:
        return True
    return b"follow=true" in scope.get("query_string", b"")


def unsampled_context(scope: Scope) -> Context | None:
    """The request's trace context when its trace is not to be sampled, else None (a
    sampled caller, or a new trace to sample, whose id is then handed to the SDK)."""
    carried = {_PROPAGATED[k]: v.decode("latin-1") for k, v in scope["headers"] if k in _PROPAGATED}
    if TRACEPARENT in carried:
        context = tracecontext.read(carried)
        if context is not None:  # a malformed one is ignored, as the propagator ignores it
            return None if tracecontext.sampled(context) else context
    return sampling.root(tracecontext.read_baggage(carried))


class HeadSampledApi(FastAPI):
    """The app, deciding each request's sampling before FastAPI's telemetry is asked to."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not sampling.active() or not tracecontext.FAST or untraced(scope):
            await super().__call__(scope, receive, send)
            return
        context = unsampled_context(scope)
        if context is None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                sampling.drop()
            return
        scope[UNSAMPLED] = True
        token = attach(context)
        try:
            await super().__call__(scope, receive, send)
        finally:
            detach(token)


def telemetry() -> TelemetryConfig:
    return {"tracing": True, "operation_spans": False, "metrics": False, "logs": False, "exclude": untraced}
