"""`jobstream events tail|export|import`: the log itself, followed, saved to a file, restored.

Like `jobstream audit`, these read NATS directly (`--nats-url`/NATS_URL with a login that may
read every stream, or `--data-dir` of a `jobstream up` with NATS_SERVICE_PASSWORD): an export
and an import need the whole log and its headers, which only the service login may have. A
domain token never reaches them; it follows its own domain with `GET /api/v1/events` (SSE) or
`nats sub` on its own subjects, and the broker refuses it anything else.

Exit codes: 0 done, 2 bad input (arguments, file, a non-empty target), 3 NATS unreachable or
the log unreadable.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.audit.command import CONNECT_TIMEOUT_S, DataDir, NatsUrl, nats_url

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from services.cli.event_log import Restored, Start
    from services.cli.event_records import Format, Record

EXIT_BAD_INPUT = 2
EXIT_UNREADABLE = 3
SHORT_PAYLOAD = 120
ENVELOPE = ("domain", "actor", "id", "v", "at", "correlation_id", "causation_id", "type")
# The payload field that repeats the subject's aggregate id: not worth a column twice.
AGGREGATE_IDS = {"job": "job_id", "worker": "worker_id", "schedule": "schedule_id", "template": "template"}
TOKEN = re.compile(r"[A-Za-z0-9_-]+")

events_app = typer.Typer(
    rich_markup_mode=None,
    help="Follow the event log, export it to a file, import an export into an empty server.",
    no_args_is_help=True,
)

Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="a stream sequence (1: from the start), a time (2026-12-01T09:00, local unless it names "
        "a zone), or an age (90s, 10m, 2h, 7d)",
    ),
]
Domain = Annotated[str | None, typer.Option("--domain", help="only this domain's events")]


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


_AGE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> int | datetime:
    """`--since`: a sequence (digits), an age (`10m`), or an ISO 8601 time (local if it has no zone)."""
    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise ValueError("--since: a stream sequence starts at 1")
        return int(text)
    if age := _AGE.match(text):
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[age[2]]: int(age[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since: {text!r} is not a sequence (12345), a time (2026-12-01T09:00:00Z) or an age (10m)"
        ) from None
    return when.astimezone(UTC)  # a time without a zone is the local time


def event_filter(domain: str | None, subject: str | None) -> str:
    """The server-side filter: the pattern given (an event subject, wildcards allowed), narrowed to
    `domain`; ValueError when the two cannot both hold."""
    if domain is not None and not TOKEN.fullmatch(domain):
        raise ValueError(f"--domain: {domain!r} is not a domain name")
    if subject is None:
        return f"ev.{domain}.>" if domain else "ev.>"
    tokens = subject.split(".")
    bad = any(not t or (t not in ("*", ">") and not TOKEN.fullmatch(t)) for t in tokens)
    if tokens[0] != "ev" or bad or ">" in tokens[:-1]:
        raise ValueError(
            f"--subject: {subject!r} is not an event subject pattern like 'ev.prod.job.*.failed'"
        )
    if len(tokens) == 1:
        raise ValueError("--subject: 'ev' alone matches nothing; 'ev.>' is every event")
    if domain is not None:
        if tokens[1] == ">":
            tokens[1:] = [domain, ">"]
        elif tokens[1] == "*":
            tokens[1] = domain
        elif tokens[1] != domain:
            raise ValueError(f"--subject {subject!r} is outside --domain {domain}")
    return ".".join(tokens)


def short_payload(record: Record) -> str:
    """The payload without the envelope and the ids the subject already names, on one short line."""
    payload = record.payload()
    if not isinstance(payload, dict):
        return f"<{len(record.data)} bytes, not a JSON object>"
    parts = record.subject.split(".")
    own_id = AGGREGATE_IDS.get(parts[2]) if len(parts) > 2 else None
    shown = {k: v for k, v in payload.items() if k not in ENVELOPE and k != own_id}
    text = json.dumps(shown, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= SHORT_PAYLOAD else text[: SHORT_PAYLOAD - 1] + "…"


def line_of(record: Record) -> str:
    when = record.time.astimezone().isoformat(timespec="milliseconds")
    return f"{record.seq}  {when}  {record.subject}  {record.type or '-'}  {short_payload(record)}"


def _tail_dict(record: Record) -> dict[str, Any]:
    row = record.to_dict()
    row.pop("data")
    return row


async def _tail(
    url: str, filter_subject: str, start: Start, types: set[str], as_json: bool, count: int | None,
    follow: bool,
) -> int:  # fmt: skip
    from services.cli import event_log
    from services.cli.event_records import Record
    from services.runtime.connect import jetstream

    # A follower rides out a server restart: it reconnects, and the ordered consumer is rebuilt.
    nc = await open_nats(url, reconnect=follow)
    shown = 0
    try:
        source = (
            event_log.follow(jetstream(nc), filter_subject, start)
            if follow
            else event_log.read(nc, "EVENTS", filter_subject, start if start is not None else 1)
        )
        async for item in source:
            for record in [item] if isinstance(item, Record) else item or []:
                if types and record.type not in types:
                    continue
                typer.echo(json.dumps(_tail_dict(record), ensure_ascii=False) if as_json else line_of(record))
                shown += 1
                if count is not None and shown >= count:
                    return shown
    finally:
        await nc.close()
    return shown


_refusals: list[str] = []  # what the broker refused this process (it says so asynchronously)


async def open_nats(url: str, reconnect: bool = False) -> NATS:
    """One connection to read or write the log. Like the audit's, it fails at once when no server
    answers; a follower (`reconnect`) then rides out restarts. The broker's refusals are kept, so
    a request that then times out can say why."""
    import nats

    from services.audit.command import _answers, without_login
    from services.audit.reader import ReadError
    from services.runtime.connect import MAX_OUTSTANDING_PINGS, PING_INTERVAL_S, RECONNECT_WAIT_S

    servers = url.split(",")
    if not any([await asyncio.to_thread(_answers, one) for one in servers]):
        raise ReadError(f"no NATS server answers at {without_login(url)}")

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            _refusals.append(str(exc).strip())

    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=servers, name="jobstream-events", allow_reconnect=reconnect, connect_timeout=5,
                max_reconnect_attempts=-1 if reconnect else 0, reconnect_time_wait=RECONNECT_WAIT_S,
                ping_interval=PING_INTERVAL_S, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                error_cb=on_error, pending_size=64 * 1024 * 1024,
            ),
            CONNECT_TIMEOUT_S,
        )  # fmt: skip
    except TimeoutError:
        raise ReadError(f"could not log in to {without_login(url)} in {CONNECT_TIMEOUT_S:.0f}s") from None


def _tail_api(
    filter_subject: str, start: Start, types: set[str], as_json: bool, count: int | None, no_follow: bool,
    domain: str | None,
) -> None:  # fmt: skip
    """`tail --api`: the API's event stream, which the API scopes to the token's domain."""
    from services.cli import events_api
    from services.cli.client import Client, ClientError

    if no_follow:
        raise _fail("--no-follow: the API's event stream does not end; use --count N with --api")
    if isinstance(start, datetime):
        raise _fail("--since with --api takes a stream sequence, not a time")
    if domain:  # the admin token acts in this domain; a domain token naming another is refused (404)
        os.environ["JOBSTREAM_DOMAIN"] = domain
    shown = 0
    try:
        for record in events_api.follow(Client.from_env(), start):
            if types and record.type not in types:
                continue
            if not events_api.subject_matches(filter_subject, record.subject):
                continue
            typer.echo(json.dumps(_tail_dict(record), ensure_ascii=False) if as_json else line_of(record))
            shown += 1
            if count is not None and shown >= count:
                return
    except ClientError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _connect_error(exc: Exception) -> typer.Exit:
    from services.audit.command import _hint

    hint = _hint(exc)
    if _refusals:
        hint = (
            f" (the broker refused: {_refusals[0]}; this login may not read the streams, as a domain"
            " token's may not: use the service login, or follow one domain with GET /api/v1/events)"
        )
    return _fail(f"the log could not be read: {type(exc).__name__}: {exc}{hint}", EXIT_UNREADABLE)


@events_app.command("tail")
def tail(
    subject: Annotated[
        str | None, typer.Option("--subject", help="an event subject pattern: 'ev.prod.job.*.failed'")
    ] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="only events of this type (repeat for more)")
    ] = None,
    since: Since = None,
    domain: Domain = None,
    count: Annotated[int | None, typer.Option("--count", min=1, help="stop after this many events")] = None,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="stop at the last stored event instead of following")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    through_api: Annotated[
        bool,
        typer.Option(
            "--api", help="through the API (JOBSTREAM_URL, JOBSTREAM_TOKEN): any token, its domain only"
        ),
    ] = False,
    url: NatsUrl = None,
    data_dir: DataDir = Path(".jobstream"),
) -> None:
    """Print the log's events as they land (seq, time, subject, type, payload); Ctrl-C stops.

    Without --since only new events are shown; --since 1 starts at the beginning."""
    try:
        filter_subject = event_filter(domain, subject)
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if through_api:
        _tail_api(filter_subject, start, set(types or []), as_json, count, no_follow, domain)
        return
    target = nats_url(url, data_dir)
    try:
        asyncio.run(_tail(target, filter_subject, start, set(types or []), as_json, count, not no_follow))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except Exception as exc:  # nats-py's connection and API errors have no common base
        raise _connect_error(exc) from exc


async def _export(
    url: str, output: str, fmt: Format, filter_subject: str, domain: str | None, start: int | datetime,
    until_seq: int | None, include_logs: bool,
) -> tuple[int, int, int, int]:  # fmt: skip
    from services.cli import event_log
    from services.cli.event_records import Writer

    nc = await open_nats(url)
    writer = Writer(output, fmt, sys.stdout.buffer)
    events = outputs = first = last = 0
    try:
        async for batch in event_log.read(nc, "EVENTS", filter_subject, start, until_seq):
            for record in batch:
                writer.write(record)
            events += len(batch)
            first, last = first or batch[0].seq, batch[-1].seq
        if include_logs:
            logs_start = start if isinstance(start, datetime) else 1
            for stream in await event_log.output_streams(nc, domain):
                async for batch in event_log.read(nc, stream, "log.>", logs_start):
                    for record in batch:
                        writer.write(record)
                    outputs += len(batch)
    finally:
        writer.close()
        await nc.close()
    return events, outputs, first, last


@events_app.command("export")
def export(
    output: Annotated[str, typer.Option("--output", "-o", help="file to write ('-': stdout, jsonl only)")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or parquet")] = "jsonl",
    domain: Domain = None,
    since: Since = None,
    until_seq: Annotated[
        int | None, typer.Option("--until-seq", min=1, help="stop at this stream sequence")
    ] = None,
    include_logs: Annotated[
        bool, typer.Option("--include-logs", help="also the jobs' output (LOGS_<domain> streams)")
    ] = False,
    url: NatsUrl = None,
    data_dir: DataDir = Path(".jobstream"),
) -> None:
    """Write every event (stream, seq, subject, time, headers, type, payload, raw data) to a file."""
    if fmt not in ("jsonl", "parquet"):
        raise _fail(f"--format: {fmt!r} is not jsonl or parquet")
    if fmt == "parquet" and output == "-":
        raise _fail("--format parquet needs a file (--output FILE), not stdout")
    try:
        filter_subject = event_filter(domain, None)
        start = parse_since(since) if since else 1
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if isinstance(start, int) and until_seq is not None and until_seq < start:
        raise _fail(f"--until-seq {until_seq} is before --since {start}")
    if output != "-" and not Path(output).parent.is_dir():
        raise _fail(f"--output: directory {Path(output).parent} does not exist")
    target = nats_url(url, data_dir)
    try:
        events, outputs, first, last = asyncio.run(
            _export(target, output, fmt, filter_subject, domain, start, until_seq, include_logs)  # type: ignore[arg-type]
        )
    except Exception as exc:
        raise _connect_error(exc) from exc
    span = f"seq {first}..{last}" if events else "none"
    logs = f" and {outputs} output messages" if include_logs else ""
    typer.echo(f"exported {events} events ({span}){logs} to {output}", err=True)


async def _import(url: str, path: Path, force: bool) -> Restored:
    from services.cli import event_log
    from services.cli.event_records import RecordError, read_file

    records = read_file(path)
    first = next(records, None)  # a file that is no export is refused before the server is touched
    if first is None:
        raise RecordError(f"{path}: holds no events")
    nc = await open_nats(url)
    try:
        return await event_log.restore(nc, itertools.chain([first], records), force)
    finally:
        await nc.close()


@events_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="an export (jsonl or parquet, told apart by content)")],
    force: Annotated[
        bool, typer.Option("--force", help="append to a server whose log is not empty (new sequences)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    url: NatsUrl = None,
    data_dir: DataDir = Path(".jobstream"),
) -> None:
    """Republish an export in order, with its headers, into a server with an empty log.

    Events keep their sequences; each gets Jobstream-Original-Seq and -Time headers."""
    from services.cli.event_log import ImportRefused
    from services.cli.event_records import RecordError

    if not file.is_file():
        raise _fail(f"{file}: no such file")
    target = nats_url(url, data_dir)
    try:
        done = asyncio.run(_import(target, file, force))
    except (ImportRefused, RecordError, UnicodeDecodeError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        raise _connect_error(exc) from exc
    summary = {
        "events": done.events, "outputs": done.outputs, "first_seq": done.first_seq,
        "last_seq": done.last_seq, "holes": done.holes, "renumbered": done.renumbered,
        "duplicates": done.duplicates,
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(summary))
        return
    kept = "sequences kept" if not done.renumbered else f"{done.renumbered} renumbered"
    holes = f", {done.holes} holes kept as deleted messages" if done.holes else ""
    if done.duplicates:
        holes += f", {done.duplicates} dropped as already there (their Nats-Msg-Id)"
    span = f"seq {done.first_seq}..{done.last_seq}, " if done.events else ""
    typer.echo(f"imported {done.events} events ({span}{kept}{holes}) and {done.outputs} output messages")
