"""The API's SERVER spans, the root of a job's trace (or a child of the caller's `traceparent`).

FastAPI (0.165+) makes them itself once a TracerProvider is installed, as the outermost layer
of the app, with the route template as name; this only configures it. Streams are not traced
(the SSE event feed, followed logs): a span hours long that replays history says nothing, and
replaying history must make no spans. Neither are /health, /ready and /metrics, which probes
call every few seconds, nor the UI's files. No operation spans (dependencies, endpoint,
serialization) and no OTel metrics or logs: Prometheus has the counts, and each span costs.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi.telemetry import TelemetryConfig

STREAMS = ("/api/v1/events",)


def untraced(scope: MutableMapping[str, Any]) -> bool:
    path: str = scope.get("path", "")
    if not path.startswith("/api/") or path in STREAMS:
        return True
    return b"follow=true" in scope.get("query_string", b"")


def telemetry() -> TelemetryConfig:
    return {"tracing": True, "operation_spans": False, "metrics": False, "logs": False, "exclude": untraced}
