"""Tracing: one job is one trace from the API request to its outcome, kept in the log's headers.

Real nats-server, the API in-process (TestClient), the dispatcher and a worker in this loop, and
the OpenTelemetry SDK with its in-memory exporter (the SDK's own, not a mock) installed as the
process's provider, as `tracing.setup` installs it with OTLP export.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from events import sampling, subjects
from events.codec import decode_event, encode
from events.ids import new_id
from events.job import Dispatched, JobSpec, ShellExecutor, Started, Submitted, Succeeded
from events.store import EventStore
from events.streams import EVENTS_STREAM
from projections.rebuild import rebuild
from projections.replay import replay
from services.audit.command import run_verify
from services.cli.trace_command import as_dict, export, fetch
from services.cli.trace_tree import derive, derived_trace_id, walk
from services.runtime import tracing
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.scheduler.service import Scheduler
from tests.integration.harness import engine
from tests.integration.inprocess import AUTH, api_client

V1 = "/api/v1"
JOB = {"name": "traced", "executor": {"type": "shell", "script": "echo hi; exit 3"}}


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's TracerProvider (set once per process) with an in-memory exporter."""
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(id_generator=tracing.hand_off_ids())  # as tracing.setup's
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    assert tracing.enabled()
    yield memory
    memory.clear()


def _by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def _stored(url: str, job_id: str) -> list[tuple[Any, dict[str, str]]]:
    """The job's events as stored, each with the headers it was appended with."""
    nc = await connect(url, "probe", max_reconnect_attempts=0)
    js = jetstream(nc)
    out: list[tuple[Any, dict[str, str]]] = []
    seq = 1
    try:
        for _ in range(100):
            try:
                raw = await js.get_msg(
                    EVENTS_STREAM, seq=seq, subject=subjects.job_all("prod", job_id), next=True, direct=True
                )
            except Exception:
                break
            assert raw.seq is not None and raw.subject is not None
            out.append((decode_event(raw.subject, raw.data or b""), dict(raw.headers or {})))
            seq = raw.seq + 1
    finally:
        await nc.close()
    return out


async def _spans_of(exporter: InMemorySpanExporter, trace_id: int, names: set[str]) -> list[ReadableSpan]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        if names <= {s.name for s in spans}:
            return spans
        await asyncio.sleep(0.05)
    raise AssertionError(f"spans never ended: {names - {s.name for s in spans}}")


async def test_one_job_is_one_trace_from_the_request_to_the_outcome(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    url = own_nats_server.url
    with api_client(url, tmp_path) as api:
        nc = await connect(url, "test")
        store = EventStore(nc, jetstream(nc))
        try:
            async with engine(url, store) as e:
                e.domain = "prod"
                e.start_dispatcher()
                e.start_worker("w1")
                await e.ready("w1")
                response = await asyncio.to_thread(api.post, f"{V1}/jobs", json=JOB, headers=AUTH)
                assert response.status_code == 201, response.text
                job_id = response.json()["id"]
                await e.wait(job_id, lambda s: s.terminal)
        finally:
            await nc.close()

        server = _by_name(exporter.get_finished_spans(), "POST /api/v1/jobs")
        names = {"publish submitted", "dispatch job", "publish dispatched", "run job", "execute shell"}
        names |= {"publish started", "publish failed"}
        spans = await _spans_of(exporter, server.context.trace_id, names)

        # The tree: request -> submit append -> dispatch (consumer) -> dispatch append -> run (consumer).
        assert server.kind is SpanKind.SERVER and server.parent is None
        submit = _by_name(spans, "publish submitted")
        dispatch = _by_name(spans, "dispatch job")
        dispatched = _by_name(spans, "publish dispatched")
        run = _by_name(spans, "run job")
        assert submit.kind is SpanKind.PRODUCER and _parent_of(submit) == server.context.span_id
        assert dispatch.kind is SpanKind.CONSUMER and _parent_of(dispatch) == submit.context.span_id
        assert dispatched.kind is SpanKind.PRODUCER and _parent_of(dispatched) == dispatch.context.span_id
        assert run.kind is SpanKind.CONSUMER and _parent_of(run) == dispatched.context.span_id
        for child in ("execute shell", "publish started", "publish failed"):
            assert _parent_of(_by_name(spans, child)) == run.context.span_id, child
        # The dispatch is linked to its batch, a trace of its own.
        batch = next(s for s in exporter.get_finished_spans() if s.name == "dispatch batch")
        assert [link.context.span_id for link in dispatch.links] == [batch.context.span_id]
        assert batch.context.trace_id != server.context.trace_id
        assert run.attributes is not None
        assert {k: run.attributes.get(k) for k in ("jobstream.job.id", "jobstream.attempt")} == {
            "jobstream.job.id": job_id,
            "jobstream.attempt": 1,
        }
        assert run.attributes["jobstream.worker.id"] == "w1" and run.attributes["jobstream.domain"] == "prod"
        assert run.attributes["jobstream.exit_code"] == 3 and run.attributes["jobstream.outcome"] == "failed"
        assert run.attributes["jobstream.schedule.id"] == ""

        # Kept in the log: each event's headers carry the span it was appended in.
        stored = await _stored(url, job_id)
        assert [ev.type for ev, _ in stored] == ["submitted", "dispatched", "started", "failed"]
        producers = {s.name.removeprefix("publish "): s for s in spans if s.kind is SpanKind.PRODUCER}
        for ev, headers in stored:
            span = producers[ev.type]
            version, trace_id, span_id, flags = headers["traceparent"].split("-")
            assert (trace_id, span_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
            assert version == "00" and int(flags, 16) & 1  # sampled
        # Causation and correlation: each event names the one it answers, all the job.
        events = [ev for ev, _ in stored]
        assert [ev.causation_id for ev in events] == [None, events[0].id, events[1].id, events[2].id]
        assert {ev.correlation_id for ev in events} == {job_id}

        # The job detail gives the trace id; `jobstream trace` derives the same trace from the events.
        detail = (await asyncio.to_thread(api.get, f"{V1}/jobs/{job_id}", headers=AUTH)).json()
        assert detail["trace_id"] == f"{server.context.trace_id:032x}"
        history = (await asyncio.to_thread(api.get, f"{V1}/jobs/{job_id}/events", headers=AUTH)).json()
        derived = as_dict(derive(history, detail["traceparent"]))
        assert derived["trace_id"] == detail["trace_id"]
        tree = [(s["name"], s["parent_span_id"]) for s in derived["spans"]]
        assert [name for name, _ in tree] == ["job traced", "attempt 1", "queued", "start delay", "run"]
        assert tree[0][1] == f"{submit.context.span_id:016x}"
        run_span = derived["spans"][-1]
        assert run_span["attributes"]["jobstream.exit_code"] == 3 and run_span["error"]
        starts = [s["start"] for s in derived["spans"]]
        assert starts[0] == history[0]["at"].replace("Z", "+00:00") or starts[0] <= starts[-1]


async def test_replay_audit_and_sse_history_make_no_spans(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    url = own_nats_server.url
    with api_client(url, tmp_path) as api:
        for i in range(3):
            response = api.post(f"{V1}/jobs", json=JOB | {"name": f"n{i}"}, headers=AUTH)
            assert response.status_code == 201
        api.post(f"{V1}/jobs/{response.json()['id']}/cancel", headers=AUTH)
        assert any(s.name == "publish submitted" for s in exporter.get_finished_spans())  # tracing is on
        exporter.clear()

        seen = []
        with api.stream("GET", f"{V1}/events", params={"since": 1}, headers=AUTH) as stream:
            for line in stream.iter_lines():
                seen.append(line)
                if sum("cancelled" in x for x in seen) or len(seen) > 400:
                    break
        assert any("cancelled" in line for line in seen)
        nc = await connect(url, "test")
        try:
            assert await rebuild(tmp_path / "rebuilt.duckdb", nc) > 0
            assert (await replay(nc, tmp_path / "replayed.duckdb")).seq > 0
        finally:
            await nc.close()
        report = await run_verify(url)
        assert report.events > 0 and not report.violations, report.violations
    assert exporter.get_finished_spans() == ()


class _Via:
    """`jobstream trace`'s reads, through the in-process API."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def get(self, path: str, **params: Any) -> Any:
        response = self.api.get(V1 + path, params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback OTLP/HTTP endpoint that keeps each request body it is sent."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert self.path == "/v1/traces"
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


async def test_a_job_from_before_tracing_gets_its_trace_from_the_log_sent_over_otlp(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    url = own_nats_server.url
    job_id = new_id()
    common: dict[str, Any] = {"domain": "prod", "job_id": job_id, "correlation_id": job_id}
    spec = JobSpec(name="old", executor=ShellExecutor(script="true"))
    submitted = Submitted(actor="api", spec=spec, **common)
    dispatched = Dispatched(actor="dispatcher", worker_id="w9", attempt=1, spec=spec, **common)
    started = Started(actor="worker:w9", worker_id="w9", attempt=1, causation_id=dispatched.id, **common)
    done = Succeeded(actor="worker:w9", worker_id="w9", attempt=1, exit_code=0, **common)
    with api_client(url, tmp_path) as api:
        nc = await connect(url, "test")
        try:  # appended as an untraced jobstream did: no trace headers
            for event in (submitted, dispatched, started, done):
                worker = "w9" if event is dispatched else None
                await jetstream(nc).publish(subjects.job("prod", job_id, event.type, worker), encode(event))
        finally:
            await nc.close()
        deadline = time.monotonic() + 10
        while (detail := api.get(f"{V1}/jobs/{job_id}", headers=AUTH).json()).get("status") != "succeeded":
            assert time.monotonic() < deadline, detail
            await asyncio.sleep(0.05)
        assert detail["trace_id"] is None and detail["traceparent"] is None
        trace = fetch(_Via(api), job_id)
    assert trace.trace_id == derived_trace_id("prod", job_id) and trace.parent_span_id is None
    assert [node.name for _, node in walk(trace.root)] == [
        "job old",
        "attempt 1",
        "queued",
        "start delay",
        "run",
    ]

    with otlp_receiver() as (endpoint, bodies):
        export(trace, endpoint)
    [body] = bodies
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "jobstream-trace"
    sent = [s for scope in resource_spans.scope_spans for s in scope.spans]
    by_name = {s.name: s for s in sent}
    assert set(by_name) == {"job old", "attempt 1", "queued", "start delay", "run"}
    assert {s.trace_id for s in sent} == {trace.trace_id.to_bytes(16, "big")}
    assert by_name["job old"].parent_span_id == b""
    assert by_name["run"].parent_span_id == by_name["attempt 1"].span_id
    assert by_name["attempt 1"].parent_span_id == by_name["job old"].span_id
    stamps = [int(e.at.timestamp() * 1e9) for e in (submitted, done)]
    assert (by_name["job old"].start_time_unix_nano, by_name["job old"].end_time_unix_nano) == tuple(stamps)
    run_attrs = {a.key: a.value for a in by_name["run"].attributes}
    assert (
        run_attrs["jobstream.exit_code"].int_value == 0
        and run_attrs["jobstream.worker.id"].string_value == "w9"
    )


async def test_a_schedule_tick_is_the_root_of_its_jobs_trace(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    url = own_nats_server.url
    exporter.clear()
    schedule = {"name": "every-second", "interval_s": 1, "job": JOB | {"name": "ticked"}}
    with api_client(url, tmp_path) as api:
        created = api.post(f"{V1}/schedules", json=schedule, headers=AUTH)
        assert created.status_code == 201, created.text
        schedule_id = created.json()["id"]
        nc = await connect(url, "test")
        store = EventStore(nc, jetstream(nc))
        stop = asyncio.Event()
        scheduler = asyncio.create_task(Scheduler(url).run(stop))
        try:
            async with engine(url, store) as e:
                e.domain = "prod"
                e.start_dispatcher()
                e.start_worker("w1")
                deadline = time.monotonic() + 20
                while not any(s.name == "run job" for s in exporter.get_finished_spans()):
                    assert time.monotonic() < deadline, [s.name for s in exporter.get_finished_spans()]
                    await asyncio.sleep(0.1)
                stop.set()
                await asyncio.wait_for(scheduler, 10)
        finally:
            stop.set()
            await nc.close()
    finished = exporter.get_finished_spans()
    run = next(s for s in finished if s.name == "run job")
    spans = {s.context.span_id: s for s in finished if s.context.trace_id == run.context.trace_id}
    chain = [run]
    while chain[-1].parent is not None:
        chain.append(spans[chain[-1].parent.span_id])
    assert [s.name for s in reversed(chain)] == [
        "schedule tick", "publish submitted", "dispatch job", "publish dispatched", "run job",
    ]  # fmt: skip
    tick = chain[-1]
    assert tick.attributes is not None and tick.attributes["jobstream.schedule.id"] == schedule_id
    assert run.attributes is not None and run.attributes["jobstream.schedule.id"] == schedule_id
    fired = [s for s in spans.values() if s.name == "publish fired"]
    assert fired and _parent_of(fired[0]) == tick.context.span_id


def test_a_batch_gives_each_job_its_own_trace_linked_to_the_request(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    with api_client(own_nats_server.url, tmp_path) as api:
        response = api.post(f"{V1}/jobs/batch", json={"jobs": [JOB, JOB, JOB]}, headers=AUTH)
        assert response.status_code == 201, response.text
        ids = response.json()["ids"]
        details = [api.get(f"{V1}/jobs/{job_id}", headers=AUTH).json() for job_id in ids]
    finished = exporter.get_finished_spans()
    request = _by_name(finished, "POST /api/v1/jobs/batch")
    submits = [s for s in finished if s.name == "publish submitted"]
    assert len(submits) == 3 and all(s.parent is None for s in submits)
    assert len({s.context.trace_id for s in submits} | {request.context.trace_id}) == 4
    assert all([link.context.span_id for link in s.links] == [request.context.span_id] for s in submits)
    assert sorted(d["trace_id"] for d in details) == sorted(f"{s.context.trace_id:032x}" for s in submits)


def test_an_unsampled_job_makes_no_spans_and_still_keeps_its_trace_id_in_the_log(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    trace_id, caller = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with api_client(own_nats_server.url, tmp_path) as api:
        headers = AUTH | {"traceparent": f"00-{trace_id}-{caller}-00"}  # the caller did not sample it
        response = api.post(f"{V1}/jobs", json=JOB, headers=headers)
        assert response.status_code == 201, response.text
        detail = api.get(f"{V1}/jobs/{response.json()['id']}", headers=AUTH).json()
    assert detail["trace_id"] == trace_id
    version, kept, _, flags = detail["traceparent"].split("-")
    assert (version, kept, flags) == ("00", trace_id, "00")
    assert not [s for s in exporter.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]


@pytest.fixture
def ratio_zero() -> Iterator[None]:
    """Roots decided ahead at ratio 0, as 99 jobs in 100 are at the default 0.01."""
    sampling.install(0.0)
    yield
    sampling.install(None)


def test_requests_decided_unsampled_ahead_make_no_spans_and_keep_new_trace_ids(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter, ratio_zero: None
) -> None:
    exporter.clear()
    with api_client(own_nats_server.url, tmp_path) as api:
        one = api.post(f"{V1}/jobs", json=JOB, headers=AUTH)
        batch = api.post(f"{V1}/jobs/batch", json={"jobs": [JOB, JOB]}, headers=AUTH)
        assert one.status_code == 201 and batch.status_code == 201, (one.text, batch.text)
        ids = [one.json()["id"], *batch.json()["ids"]]
        details = [api.get(f"{V1}/jobs/{job_id}", headers=AUTH).json() for job_id in ids]
    assert not [s for s in exporter.get_finished_spans() if s.name.startswith(("POST", "publish"))]
    parents = [d["traceparent"].split("-") for d in details]
    assert all(flags == "02" for _, _, _, flags in parents)  # not sampled; a random trace id
    assert len({d["trace_id"] for d in details}) == 3  # one trace each, batch jobs too
    assert all(d["trace_id"] == trace_id for d, (_, trace_id, _, _) in zip(details, parents, strict=True))


def test_a_request_sampled_ahead_is_traced_under_the_trace_id_drawn_for_it(
    own_nats_server: NatsServer, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    sampling.install(1.0)
    try:
        with api_client(own_nats_server.url, tmp_path) as api:
            response = api.post(f"{V1}/jobs", json=JOB, headers=AUTH)
            assert response.status_code == 201, response.text
            detail = api.get(f"{V1}/jobs/{response.json()['id']}", headers=AUTH).json()
    finally:
        sampling.install(None)
    request = _by_name(exporter.get_finished_spans(), "POST /api/v1/jobs")
    assert f"{request.context.trace_id:032x}" == detail["trace_id"]
    assert detail["traceparent"].endswith("-03"), detail["traceparent"]  # sampled, random id
    assert sampling.take() is None  # nothing left over for an unrelated span
