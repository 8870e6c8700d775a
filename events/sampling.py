"""Head sampling decided before the SDK is asked, so an unsampled root costs two random draws.

A root span the SDK decides not to sample still costs its sampler, id generation, attribute
dicts and, for the API's SERVER span, FastAPI's request telemetry: some 25-50 us, paid by
99 jobs in 100 at the default ratio. When jobstream chose the sampler itself
(`ParentBased(TraceIdRatioBased(ratio))`, services/runtime/tracing.py), the decision for a
new trace is a pure function of its trace id, so it can be made here first:

- not sampled: `root()` returns a context holding a non-recording span with fresh ids and
  flags 02 (not sampled, random id), and the call site makes no span; appends still carry
  the trace id in the log;
- sampled: `root()` hands the trace id it drew to the SDK's id generator (`take()`, read by
  `tracing.hand_off_ids()`) and returns None, so the span the call site then starts gets that
  id and the SDK's own sampler, deciding on it, agrees.

The SDK stays the authority: a hand-off that no span takes is dropped (`drop()`), and without
`install` (tracing off, or a sampler the user chose) `root()` always answers None.
Here, not in services/, because events/store.py decides its producer spans' roots.
"""

from __future__ import annotations

import random
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

# TraceIdRatioBased's own arithmetic (opentelemetry.sdk.trace.sampling): the low 64 bits of
# the trace id against round(ratio * 2**64).
TRACE_ID_LIMIT = (1 << 64) - 1

_bound: int | None = None  # None: not installed, the SDK decides every root itself
_handoff: ContextVar[int | None] = ContextVar("jobstream_trace_id_handoff", default=None)
# Not sampled, and the trace id random (W3C level 2), the flags the SDK gives such a root.
_UNSAMPLED = TraceFlags(TraceFlags.RANDOM_TRACE_ID)


def bound_for(ratio: float) -> int:
    return round(ratio * (TRACE_ID_LIMIT + 1))


def install(ratio: float | None) -> None:
    """Decide roots ahead at this ratio (the provider's sampler's); None: stop deciding."""
    global _bound
    _bound = None if ratio is None else bound_for(ratio)


def active() -> bool:
    return _bound is not None


def sampled(trace_id: int, bound: int) -> bool:
    """What TraceIdRatioBased decides for a root with this trace id."""
    return trace_id & TRACE_ID_LIMIT < bound


def root(base: Context | None = None) -> Context | None:
    """A new trace's context (`base`, baggage and all, with the trace's span) when it is not to
    be sampled; None when it is (or when not installed): the span started next in this context
    then gets the trace id drawn here."""
    bound = _bound
    if bound is None:
        return None
    trace_id = random.getrandbits(128) or 1
    if sampled(trace_id, bound):
        _handoff.set(trace_id)
        return None
    span_id = random.getrandbits(64) or 1
    span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=_UNSAMPLED))
    return trace.set_span_in_context(span, base if base is not None else Context())


def take() -> int | None:
    """The trace id `root()` drew for the span being started, once; None: draw one."""
    trace_id = _handoff.get()
    if trace_id is not None:
        _handoff.set(None)
    return trace_id


def drop() -> None:
    """Forget a hand-off no span took, so a later, unrelated root does not get its id."""
    if _handoff.get() is not None:
        _handoff.set(None)
