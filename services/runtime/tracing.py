"""OpenTelemetry for the services: the SDK only when an OTLP endpoint is configured.

Without `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) nothing is
installed: the API's proxy provider stays in place, `enabled()` is False and every call site
skips span work altogether, so tracing off costs one isinstance check per decision. The SDK and
the exporter are imported only when turned on. Sampling follows the SDK's own variables
(`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`); when neither is set, one job in a hundred is
traced (`parentbased_traceidratio` at `DEFAULT_RATIO`): a traced job costs some 1 ms of CPU,
an untraced one a few header formats and parses, so tracing every job is a choice to make.

The W3C `traceparent` header is formatted and parsed directly (events/tracecontext.py) rather
than through the propagator API, unless `OTEL_PROPAGATORS` names other propagators. With the
default sampler, a new trace's sampling is decided before any span is started
(events/sampling.py): an unsampled root then makes no span at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.trace import Span, SpanKind

from events import sampling, subjects, tracecontext
from events.store import EventStore
from events.tracecontext import TRACEPARENT

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Sampling when tracing is on and the user chose no sampler: one trace in a hundred.
DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_RATIO = 0.01


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """An endpoint is set and the SDK is not disabled (`OTEL_SDK_DISABLED=true`)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name) for name in ENDPOINT_VARS)


def default_ratio(env: Mapping[str, str]) -> float | None:
    """The ratio of the default sampler, None when the user chose a sampler (the SDK reads it).

    `OTEL_TRACES_SAMPLER_ARG` alone (no sampler) sets the default sampler's ratio."""
    if env.get("OTEL_TRACES_SAMPLER", "").strip():
        return None
    try:
        ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or DEFAULT_RATIO)
    except ValueError:
        return DEFAULT_RATIO
    return ratio if 0.0 <= ratio <= 1.0 else DEFAULT_RATIO


def setup(service: str, env: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK provider with batched OTLP/HTTP export, once per process; False: tracing off.

    The service name is `OTEL_SERVICE_NAME` if set, else `jobstream-<service>`. Without a
    sampler chosen, `DEFAULT_SAMPLER` at `DEFAULT_RATIO` (passed to the provider, not written
    to the environment, which the jobs a worker runs inherit)."""
    if enabled():
        return True
    if not configured(env):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    ratio = default_ratio(env)
    sampler = ParentBased(TraceIdRatioBased(ratio)) if ratio is not None else None  # None: the SDK's
    name = env.get("OTEL_SERVICE_NAME") or f"jobstream-{service}"
    provider = TracerProvider(
        resource=Resource.create({"service.name": name}), sampler=sampler, id_generator=hand_off_ids()
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)  # the SDK flushes and shuts it down at exit
    sampling.install(ratio)  # roots decided ahead only under the sampler chosen here
    return True


def hand_off_ids() -> IdGenerator:
    """The SDK's random ids, except a trace id `sampling.root()` drew for the span being started."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class HandOffIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            drawn = sampling.take()
            return drawn if drawn is not None else super().generate_trace_id()

    return HandOffIds()


def enabled() -> bool:
    """A real provider is installed (by `setup`, or by a test with an in-memory exporter)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracer(service: str) -> trace.Tracer:
    """The tracer of one service; its scope name says which service made a span."""
    return trace.get_tracer(f"jobstream.{service}")


def context_from(headers: Mapping[str, str] | None) -> Context | None:
    """The trace context a message carries, or None when tracing is off or it carries none."""
    if not headers or TRACEPARENT not in headers or not enabled():
        return None
    return tracecontext.read(headers)


def unsampled(context: Context | None) -> bool:
    """The context (else the current one) holds a valid span context that was not sampled."""
    parent = trace.get_current_span(context if context is not None else get_current()).get_span_context()
    return parent.is_valid and not parent.trace_flags.sampled


def has_parent(context: Context | None) -> bool:
    """The context (else the current one) holds a valid span context: a span made in it is no root."""
    current = trace.get_current_span(context if context is not None else get_current())
    return current.get_span_context().is_valid


def trace_id(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) of a W3C `traceparent` header, None if absent or malformed."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].lower()


async def job_traceparent(store: EventStore, domain: str, job_id: str) -> str | None:
    """The trace a job runs in: the `traceparent` its `submitted` was appended with, read from
    that event's headers in the log (None for a job submitted while tracing was off). One
    direct get, by the stream's subject index; the read model keeps no headers."""
    headers = await store.first_headers(subjects.job(domain, job_id, "submitted"))
    value = headers.get(TRACEPARENT)
    return value if trace_id(value) else None


@contextmanager
def span(
    service: str,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
    links: list[trace.Link] | None = None,
) -> Iterator[Span | None]:
    """A current span when tracing is on, nothing (None) when off: call sites stay one `with`.

    Under a parent that was not sampled no span is made (a parent-based sampler would drop
    it); the parent's context is made current instead, so appends still carry the trace id.
    A root decided not sampled ahead (events/sampling.py) is the same, with a new trace id."""
    if not enabled():
        yield None
        return
    if not has_parent(context):
        ahead = sampling.root(context if context is not None else get_current())
        if ahead is not None:
            context = ahead
    if unsampled(context):
        token = attach(context) if context is not None else None
        try:
            yield None
        finally:
            if token is not None:
                detach(token)
        return
    with tracer(service).start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes or {}), links=links
    ) as current:
        yield current
