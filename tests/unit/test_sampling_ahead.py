"""Roots sampled ahead (events/sampling.py) decide as the SDK's own sampler would, on the same
trace id: checked against a real TracerProvider with `ParentBased(TraceIdRatioBased)` and the
hand-off id generator `tracing.setup` installs (one of its own, not the process's)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from events import sampling
from services.runtime import tracing


@pytest.fixture
def ahead() -> Iterator[None]:
    yield
    sampling.install(None)
    sampling.drop()


def _tracer(ratio: float) -> trace.Tracer:
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(ratio)), id_generator=tracing.hand_off_ids()
    )
    return provider.get_tracer("test")


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.3, 0.5, 1.0])
def test_each_root_decided_ahead_is_what_the_sdk_decides_on_its_trace_id(ratio: float, ahead: None) -> None:
    tracer, sampler = _tracer(ratio), TraceIdRatioBased(ratio)
    sampling.install(ratio)
    random.seed(7)
    kept = 0
    for _ in range(4000):
        context = sampling.root(Context())
        if context is None:  # to be sampled: the span started next takes the drawn id
            span = tracer.start_span("root", context=Context())
            assert span.is_recording() and span.get_span_context().trace_flags.sampled
            assert sampling.take() is None  # taken once, by that span
            kept += 1
        else:
            decided = trace.get_current_span(context).get_span_context()
            assert decided.is_valid and not decided.trace_flags.sampled and not decided.is_remote
            assert decided.trace_flags.random_trace_id  # as the SDK flags a root of random ids
            verdict = sampler.should_sample(None, decided.trace_id, "root").decision
            assert verdict is Decision.DROP  # the SDK would have dropped this trace id too
    assert abs(kept / 4000 - ratio) < 0.03, kept


def test_a_hand_off_no_span_takes_is_dropped(ahead: None) -> None:
    sampling.install(1.0)
    assert sampling.root() is None
    sampling.drop()
    assert sampling.take() is None
    span = _tracer(1.0).start_span("later", context=Context())
    assert span.get_span_context().trace_id != 0  # a fresh id of its own, drawn by the SDK


def test_without_install_the_sdk_decides_every_root(ahead: None) -> None:
    assert not sampling.active()
    assert all(sampling.root() is None for _ in range(100))
    assert sampling.take() is None


def test_an_unsampled_root_keeps_the_base_contexts_baggage(ahead: None) -> None:
    from opentelemetry import baggage

    sampling.install(0.0)
    base = baggage.set_baggage("jobstream.schedule.id", "s-1", Context())
    context = sampling.root(base)
    assert context is not None and baggage.get_baggage("jobstream.schedule.id", context) == "s-1"


def test_tracing_span_makes_no_span_for_a_root_decided_unsampled(
    ahead: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tracing.span` (the scheduler's tick, a worker's run) under no parent: with nothing
    sampled ahead it makes no span and the trace id drawn is current inside it."""
    sampling.install(0.0)
    monkeypatch.setattr(tracing, "enabled", lambda: True)  # as if a provider were installed
    with tracing.span("scheduler", "tick", context=Context()) as span:
        current = trace.get_current_span().get_span_context()
        assert span is None and current.is_valid and not current.trace_flags.sampled
    assert not trace.get_current_span().get_span_context().is_valid  # detached after
