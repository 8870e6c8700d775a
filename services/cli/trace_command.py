"""`jobstream trace JOB_ID`: a job's span tree from the log, printed or sent over OTLP/HTTP."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any, Protocol

import typer
from rich.tree import Tree

from services.cli import render
from services.cli.client import Client, ClientError
from services.cli.client_commands import AsJson, Token, Url, fail
from services.cli.trace_tree import Node, Trace, TraceError, derive, walk

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
SERVICE_NAME = "jobstream-trace"


class Reader(Protocol):
    """What `fetch` needs of the API client: GET a path under /api/v1, answer its JSON."""

    def get(self, path: str, **params: Any) -> Any: ...


def fetch(client: Reader, job_id: str) -> Trace:
    """The job's trace from its events (and the trace it was submitted in, if it was traced)."""
    job = client.get(f"/jobs/{job_id}")
    events = client.get(f"/jobs/{job_id}/events")
    return derive(events, job.get("traceparent"))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def _label(node: Node, begin: datetime) -> str:
    attrs = " ".join(f"{k.removeprefix('jobstream.')}={v}" for k, v in node.attributes.items())
    error = f"  error: {node.error}" if node.error else ""
    offset = (node.start - begin).total_seconds()
    return f"{node.name}  +{offset:.3f}s  {_ms(node.duration_s)}  {attrs}{error}"


def tree(trace: Trace) -> Tree:
    begin = trace.root.start
    out = Tree(f"trace {trace.trace_id:032x}")

    def add(parent: Tree, node: Node) -> None:
        branch = parent.add(_label(node, begin))
        for name, at, attrs in node.events:
            extra = " ".join(f"{k}={v}" for k, v in attrs.items())
            branch.add(f"· {name}  +{(at - begin).total_seconds():.3f}s  {extra}".rstrip())
        for child in node.children:
            add(branch, child)

    add(out, trace.root)
    return out


def as_dict(trace: Trace) -> dict[str, Any]:
    parents: dict[int, int | None] = {trace.root.span_id: trace.parent_span_id}
    for _, node in walk(trace.root):
        for child in node.children:
            parents[child.span_id] = node.span_id
    return {
        "trace_id": f"{trace.trace_id:032x}",
        "spans": [
            {
                "name": node.name,
                "span_id": f"{node.span_id:016x}",
                "parent_span_id": f"{parent:016x}" if (parent := parents[node.span_id]) else None,
                "start": node.start.isoformat(),
                "end": node.end.isoformat(),
                "duration_s": node.duration_s,
                "attributes": node.attributes,
                "error": node.error,
                "events": [{"name": n, "at": at.isoformat(), **a} for n, at, a in node.events],
            }
            for _, node in walk(trace.root)
        ],
    }


def export(trace: Trace, endpoint: str) -> None:
    """Send the spans to an OTLP/HTTP collector (`<endpoint>/v1/traces`); raises on refusal."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME})

    def ctx(span_id: int, remote: bool = False) -> SpanContext:
        return SpanContext(
            trace.trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )

    def ns(at: datetime) -> int:
        return int(at.timestamp() * 1_000_000_000)

    spans: list[ReadableSpan] = []

    def add(node: Node, parent: SpanContext | None) -> None:
        status = Status(StatusCode.ERROR, node.error) if node.error else Status(StatusCode.UNSET)
        spans.append(
            ReadableSpan(
                node.name, context=ctx(node.span_id), parent=parent, resource=resource,
                attributes=node.attributes, kind=SpanKind.INTERNAL, status=status,
                start_time=ns(node.start), end_time=ns(node.end),
                events=[Event(name, dict(attrs), ns(at)) for name, at, attrs in node.events],
            )
        )  # fmt: skip
        for child in node.children:
            add(child, ctx(node.span_id))

    add(trace.root, ctx(trace.parent_span_id, remote=True) if trace.parent_span_id else None)
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=10)
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]
    if result is not SpanExportResult.SUCCESS:
        raise ConnectionError(f"the OTLP endpoint {endpoint} did not take the spans")


def trace_job(
    job_id: Annotated[str, typer.Argument(help="the job's id")],
    otlp: Annotated[bool, typer.Option("--otlp", help="also send the spans over OTLP/HTTP")] = False,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
            help=f"OTLP/HTTP base URL for --otlp (default {DEFAULT_ENDPOINT})",
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A job's span tree derived from its events (timings from event times); `--otlp` sends it."""
    try:
        trace = fetch(Client.from_env(url, token), job_id)
    except ClientError as exc:
        raise fail(str(exc), exc.exit_code) from exc
    except TraceError as exc:
        raise fail(f"job {job_id}: {exc}", 1) from exc
    if as_json:
        render.print_json(as_dict(trace))
    else:
        render.console().print(tree(trace))
    if otlp:
        target = endpoint or DEFAULT_ENDPOINT
        try:
            export(trace, target)
        except Exception as exc:
            raise fail(f"could not send the trace to {target}: {exc}", 1) from exc
        typer.echo(f"sent {len(walk(trace.root))} spans of trace {trace.trace_id:032x} to {target}", err=True)
