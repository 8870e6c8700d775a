"""What tracing costs per job, in process: µs per operation of each per-job code path that
touches tracing, with tracing off (no provider), on but the job not sampled, and on and sampled.

Unlike `bench.tracing` (the whole system, end to end, noisy on a shared machine) this times
the code paths alone, each in a loop: the API's SERVER span (FastAPI's own telemetry and the
sampling decided ahead of it, as services/api/server_spans.py sets them up) around a POST
/api/v1/jobs and a batch of 1,000, called as ASGI apps; EventStore appends (`_headers`, the
producer span) with a store whose publish is acknowledged at once; the `traceparent` write
and read; the dispatcher's per-event `_remember_trace` and per-dispatch `_consumer_spans`; the
worker's `run job` and `execute` spans. Each mode runs in a process of its own, since a
process sets its TracerProvider once:

- off: no provider (the API's proxy provider), as without OTEL_EXPORTER_OTLP_ENDPOINT;
- unsampled: the provider `tracing.setup` installs (ParentBased(TraceIdRatioBased), by
  `setup` itself) at ratio 0, so every trace is decided not sampled, as 99 jobs in 100 are at
  the default 0.01;
- sampled: the same at ratio 1.

Spans go to a BatchSpanProcessor with an exporter that drops them (no OTLP encoding: the
sampled figures leave out the export). The job's own context is what an append of it would
carry: none when off, a remote parent with flags 00 or 01 when on.

Two figures per operation: CPU µs (the best of `--repeat` loops: a loaded machine only adds),
and Python function calls (counted by cProfile in a loop of its own), which do not depend on
the machine's load and so compare runs made at different times.

Run: `python -m bench.tracing_micro` (`--number N` to scale the loops, `--only NAME`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request  # at module level: FastAPI resolves the annotation here

MODES = ("off", "unsampled", "sampled")


def install(mode: str) -> None:
    """The provider `tracing.setup` installs (its sampler, resource, id generator), by `setup`
    itself, with its OTLP exporter swapped for one that drops the spans; or none."""
    if mode == "off":
        return
    from opentelemetry.exporter.otlp.proto.http import trace_exporter
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from services.runtime import tracing

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    trace_exporter.OTLPSpanExporter = Drop  # type: ignore[misc,assignment]
    ratio = "1" if mode == "sampled" else "0"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER_ARG": ratio}
    assert tracing.setup("bench", env)


def job_context(mode: str) -> Any:
    """The context a job's events carry: None when off, else a remote parent (flags 00 or 01)."""
    if mode == "off":
        return None
    from events import tracecontext

    flags = "01" if mode == "sampled" else "00"
    return tracecontext.read({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-{flags}"})


def job_headers(mode: str) -> dict[str, str]:
    """The headers of a job's event as stored (tracing off: the fence headers only)."""
    headers = {"Nats-Expected-Last-Subject-Sequence": "12", "Nats-Msg-Id": "x"}
    if mode != "off":
        headers["traceparent"] = f"00-{'ab' * 16}-{'cd' * 8}-{'01' if mode == 'sampled' else '00'}"
    return headers


def fake_store() -> Any:
    """An EventStore whose every publish is acknowledged at once (no NATS)."""
    from events.store import Appended, EventStore, _Try

    class Acked(EventStore):
        def __init__(self) -> None:
            self.seq = 0

        async def _send(self, tries: Sequence[_Try]) -> None:
            loop = asyncio.get_running_loop()
            for t in tries:
                self.seq += 1
                fut: asyncio.Future[Appended] = loop.create_future()
                fut.set_result(Appended(self.seq, False))
                t.fut = fut

    return Acked()


def spec() -> Any:
    from events.job import JobSpec, ShellExecutor

    return JobSpec(name="bench", executor=ShellExecutor(script="true"))


def submitted(job_id: str = "j1") -> Any:
    from events.job import Submitted

    return Submitted(domain="prod", actor="bench", job_id=job_id, correlation_id=job_id, spec=spec())


def dispatched(job_id: str = "j1") -> Any:
    from events.job import Dispatched

    return Dispatched(
        domain="prod", actor="dispatcher", job_id=job_id, correlation_id=job_id, worker_id="w1",
        attempt=1, spec=spec(),
    )  # fmt: skip


# ---- the operations: each an async function running `n` of them ------------------------------


def asgi_app(mode: str) -> Any:
    """The API's app class and telemetry config with the two submit routes, on a fake store."""

    from services.api.commands import submit_many
    from services.api.server_spans import HeadSampledApi, telemetry

    store = fake_store()
    app = HeadSampledApi(telemetry=telemetry())

    @app.post("/api/v1/jobs")
    async def submit(request: Request) -> dict[str, Any]:
        await request.body()
        [s] = await submit_many(store, "prod", "bench", [spec()])
        return {"id": s.job_id}

    @app.post("/api/v1/jobs/batch")
    async def batch(request: Request) -> dict[str, Any]:
        await request.body()
        out = await submit_many(store, "prod", "bench", [spec()] * BATCH)
        return {"n": len(out)}

    return app


BATCH = 1_000
BODY = json.dumps({"name": "bench", "executor": {"type": "shell", "script": "true"}}).encode()


async def call_asgi(app: Any, path: str) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()), (b"authorization", b"Bearer x"),
            (b"user-agent", b"python-httpx/0.28"), (b"accept", b"*/*"),
        ],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    await app(scope, receive, send)


def op_api_post(mode: str) -> Callable[[int], Awaitable[None]]:
    app = asgi_app(mode)

    async def run(n: int) -> None:
        for _ in range(n):
            await call_asgi(app, "/api/v1/jobs")

    return run


def op_api_batch_per_job(mode: str) -> Callable[[int], Awaitable[None]]:
    app = asgi_app(mode)

    async def run(n: int) -> None:
        for _ in range(max(1, n // BATCH)):
            await call_asgi(app, "/api/v1/jobs/batch")

    return run


def op_append(mode: str) -> Callable[[int], Awaitable[None]]:
    """A job's append in its trace (the dispatcher's and worker's, with the job's context)."""
    from events.store import job_append

    store = fake_store()
    ctx = job_context(mode)
    event = dispatched()

    async def run(n: int) -> None:
        for i in range(n):
            await store.append(job_append(event, i, context=ctx))

    return run


def op_append_current(mode: str) -> Callable[[int], Awaitable[None]]:
    """A job's append under the current context (the worker's `started` and outcome)."""
    from opentelemetry.context import attach, detach

    from events.store import job_append

    store = fake_store()
    ctx = job_context(mode)
    event = dispatched()

    async def run(n: int) -> None:
        token = attach(ctx) if ctx is not None else None
        try:
            for i in range(n):
                await store.append(job_append(event, i))
        finally:
            if token is not None:
                detach(token)

    return run


def op_write(mode: str) -> Callable[[int], Awaitable[None]]:
    from opentelemetry.context import get_current

    from events import tracecontext

    ctx = job_context(mode) or get_current()

    async def run(n: int) -> None:
        write = tracecontext.write
        for _ in range(n):
            write({}, None, ctx)

    return run


def op_context_from(mode: str) -> Callable[[int], Awaitable[None]]:
    """The worker's read of an assignment's trace context (services/runtime/tracing.py)."""
    from services.runtime import tracing

    headers = job_headers(mode)

    async def run(n: int) -> None:
        context_from = tracing.context_from
        for _ in range(n):
            context_from(headers)

    return run


def dispatcher(mode: str) -> Any:
    from services.dispatcher.service import Dispatcher

    d = Dispatcher("nats://127.0.0.1:1")
    d.state.apply(1, submitted())
    return d


def op_remember_trace(mode: str) -> Callable[[int], Awaitable[None]]:
    """The dispatcher's per-event bookkeeping of a job's trace (every job event it consumes)."""
    from services.runtime import tracing

    d = dispatcher(mode)
    headers = job_headers(mode)
    key = ("prod", "j1")

    async def run(n: int) -> None:
        for _ in range(n):
            if tracing.enabled():  # as `_drain_inbox` guards it
                d._remember_trace(key, headers)

    return run


def op_consumer_spans(mode: str) -> Callable[[int], Awaitable[None]]:
    """The dispatcher's per-dispatch trace work: the job's context and its CONSUMER span."""
    from events.store import job_append

    d = dispatcher(mode)
    d._remember_trace(("prod", "j1"), job_headers(mode))
    planned = [job_append(dispatched(), 1)]

    async def run(n: int) -> None:
        for _ in range(n):
            _, spans, batch = d._consumer_spans(planned)
            for span in spans:
                if span is not None:
                    span.end()
            if batch is not None:
                batch.end()

    return run


def op_worker_spans(mode: str) -> Callable[[int], Awaitable[None]]:
    """The worker's per-attempt trace work: the assignment's context, `run job` around `execute`
    and the outcome's attributes (Worker._accept, _start_and_run, _run, _report), no appends."""
    from opentelemetry import trace

    from services.runtime import tracing
    from services.worker.agent import Running, Worker
    from services.worker.settings import WorkerSettings

    w = Worker.__new__(Worker)
    w.s = WorkerSettings(nats_url="nats://127.0.0.1:1", worker_id="w1")
    headers = job_headers(mode)
    event = dispatched()

    class Msg:
        subject = "as.prod.w1"

    async def traced(r: Any, msg: Any) -> None:  # what _run does around the executor
        with tracing.span("worker", "execute shell", attributes={"jobstream.executor": "shell"}):
            pass
        current = trace.get_current_span()
        current.set_attribute("jobstream.outcome", "succeeded")
        current.set_attribute("jobstream.exit_code", 0)

    w._start_and_run_traced = traced  # type: ignore[method-assign]

    async def run(n: int) -> None:
        msg = Msg()
        for _ in range(n):
            r = Running(event, 1, trace=tracing.context_from(headers))
            await w._start_and_run(r, msg)  # type: ignore[arg-type]

    return run


OPS: dict[str, Callable[[str], Callable[[int], Awaitable[None]]]] = {
    "api POST /jobs (request)": op_api_post,
    "api POST /jobs/batch (per job)": op_api_batch_per_job,
    "store append, job's context": op_append,
    "store append, current context": op_append_current,
    "tracecontext.write": op_write,
    "tracing.context_from": op_context_from,
    "dispatcher _remember_trace": op_remember_trace,
    "dispatcher _consumer_spans (1)": op_consumer_spans,
    "worker spans (per attempt)": op_worker_spans,
}
# Loop sizes: the API request path is some 100 times the cost of a header parse.
NUMBER = {"api POST /jobs (request)": 2_000, "api POST /jobs/batch (per job)": 20_000}
DEFAULT_NUMBER = 20_000


def measure(mode: str, names: list[str], scale: float, repeat: int) -> dict[str, tuple[float, float]]:
    """µs per operation, the best of `repeat` loops, and Python function calls per operation
    (counted by cProfile, which does not depend on the machine's load); in this process,
    after `install`."""
    install(mode)
    out: dict[str, tuple[float, float]] = {}

    async def main() -> None:
        for name in names:
            run = OPS[name](mode)
            n = max(1, int(NUMBER.get(name, DEFAULT_NUMBER) * scale))
            await run(max(1, n // 10))  # warm up
            best = float("inf")
            for _ in range(repeat):
                t0 = time.process_time()
                await run(n)
                best = min(best, (time.process_time() - t0) / n)
            calls_n = max(1, n // 10)
            profile = cProfile.Profile()
            profile.enable()
            await run(calls_n)
            profile.disable()
            calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
            out[name] = (best * 1e6, calls / calls_n)

    asyncio.run(main())
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--number", type=float, default=1.0, help="scale of the loop sizes")
    p.add_argument("--repeat", type=int, default=5, help="loops per operation (the best is shown)")
    p.add_argument("--only", action="append", help="operations whose name contains this")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one mode, in this process
    args = p.parse_args(argv)
    names = [n for n in OPS if not args.only or any(o in n for o in args.only)]
    if args.mode:
        print(json.dumps(measure(args.mode, names, args.number, args.repeat)))
        return
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for mode in MODES:
        cmd = [sys.executable, "-m", "bench.tracing_micro", "--mode", mode, "--number", str(args.number)]
        cmd += ["--repeat", str(args.repeat)] + [a for o in args.only or [] for a in ("--only", o)]
        results[mode] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    width = max(len(n) for n in names)
    print(f"{'':<{width}} | {'µs per operation (CPU)':^30} | {'Python calls per operation':^30}")
    head = f"{'off':>8} | {'unsampled':>9} | {'sampled':>7}"
    print(f"{'operation':<{width}} | {head} | {head}")
    rule = f"{'-' * 8}-|-{'-' * 9}-|-{'-' * 7}"
    print(f"{'-' * width}-|-{rule}-|-{rule}")
    for n in names:
        (t_off, c_off), (t_uns, c_uns), (t_smp, c_smp) = (results[m][n] for m in MODES)
        times = f"{t_off:8.2f} | {t_uns:9.2f} | {t_smp:7.2f}"
        calls = f"{c_off:8.1f} | {c_uns:9.1f} | {c_smp:7.1f}"
        print(f"{n:<{width}} | {times} | {calls}")


if __name__ == "__main__":
    main()
