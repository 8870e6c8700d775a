"""The hand-written W3C trace context (events/tracecontext.py) against the
OpenTelemetry propagators it stands in for, and the default sampling when none is chosen."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from events import tracecontext
from events.job import JobSpec, ShellExecutor, Submitted
from events.store import _headers, job_append
from services.runtime import tracing

TRACE_ID, SPAN_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


def _context(flags: int, state: TraceState | None = None) -> object:
    span_context = SpanContext(
        TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(flags), trace_state=state
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


@pytest.mark.parametrize("flags", [0, 1])
def test_the_append_headers_are_what_the_propagators_write(flags: int) -> None:
    state = TraceState([("vendor", "x1")])
    context = baggage.set_baggage("jobstream.schedule.id", "s-1", _context(flags, state))  # type: ignore[arg-type]
    spec = JobSpec(name="n", executor=ShellExecutor(script="true"))
    item = job_append(Submitted(domain="d", actor="a", job_id="j", spec=spec), 0)
    ours = _headers(item, (None, context))
    theirs: dict[str, str] = {}
    inject(theirs, context=context)
    assert {k: ours[k] for k in theirs} == theirs
    assert set(theirs) == {"traceparent", "tracestate", "baggage"}


@pytest.mark.parametrize(
    "value",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\t",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 must be 55 long
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c8031_c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" + " " * 600,
        "garbage",
        "",
    ],
)
def test_parsing_agrees_with_the_tracecontext_propagator(value: str) -> None:
    theirs = trace.get_current_span(extract({"traceparent": value})).get_span_context()
    ours = tracecontext.parse_traceparent(value)
    if not theirs.is_valid:
        assert ours is None
    else:
        assert ours is not None
        assert (ours.trace_id, ours.span_id, ours.trace_flags, ours.is_remote) == (
            theirs.trace_id, theirs.span_id, theirs.trace_flags, theirs.is_remote,
        )  # fmt: skip
        if value.strip().startswith("00"):
            assert tracecontext.format_traceparent(ours) == value.strip()


def test_default_sampling_is_one_in_a_hundred_unless_chosen() -> None:
    assert tracing.DEFAULT_SAMPLER == "parentbased_traceidratio" and tracing.DEFAULT_RATIO == 0.01
    assert tracing.default_ratio({}) == 0.01
    assert tracing.default_ratio({"OTEL_TRACES_SAMPLER_ARG": "0.25"}) == 0.25
    assert tracing.default_ratio({"OTEL_TRACES_SAMPLER_ARG": "lots"}) == 0.01
    assert tracing.default_ratio({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) is None


def test_other_propagators_take_the_api_path() -> None:
    assert tracecontext.fast_propagation({})
    assert tracecontext.fast_propagation({"OTEL_PROPAGATORS": "tracecontext, baggage"})
    assert not tracecontext.fast_propagation({"OTEL_PROPAGATORS": "b3"})
