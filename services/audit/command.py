"""`jobstream audit verify|job|schedule`: the checks over the whole log, and one aggregate's history.

The audit reads EVENTS itself, straight from NATS (the API's event stream is per domain and
never ends), so it needs a NATS login that may read every stream: `--nats-url`/NATS_URL
with the credentials in it (`nats://user:password@host:port`), or, for a `jobstream up` on
this machine, `--data-dir` (its up.lock names the server) together with the service
password `up` was started with (NATS_SERVICE_PASSWORD; `up` keeps a generated one in memory
only, so set it when starting `up` to audit a running system). Domain tokens cannot read
the whole stream, by design.

Exit codes: 0 clean, 1 violations, 3 log unreadable or gapped, 4 (job/schedule) no such aggregate.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from services.audit.checks import Report

EXIT_CLEAN = 0
EXIT_VIOLATIONS = 1
EXIT_UNREADABLE = 3
EXIT_NOT_FOUND = 4
SERVICE_USER = "jobstream"
CONNECT_TIMEOUT_S = 15.0

audit_app = typer.Typer(
    rich_markup_mode=None,
    help="Check the event log against the invariants; show one job's or schedule's whole history.",
    no_args_is_help=True,
)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="NATS_URL",
        help="NATS server with a login that reads every stream [default: the one --data-dir's `up` runs]",
    ),
]
DataDir = Annotated[
    Path, typer.Option(help="data dir of a `jobstream up` (its up.lock names the NATS server)")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def _fail(message: str, code: int = EXIT_UNREADABLE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def nats_url(given: str | None, data_dir: Path) -> str:
    """The URL to read from: the one given, else the running `up`'s; NATS_SERVICE_PASSWORD logs
    in as jobstream's service user where the URL holds no login."""
    url = given
    if not url:
        try:
            url = str(json.loads((data_dir / "up.lock").read_text())["nats_url"])
        except (OSError, ValueError, KeyError, TypeError):
            raise _fail(
                f"no NATS server to read: pass --nats-url (or NATS_URL), or --data-dir of a `jobstream up` "
                f"({data_dir / 'up.lock'} names none)"
            ) from None
    password = os.environ.get("NATS_SERVICE_PASSWORD")
    if password:
        parts = []
        for one in url.split(","):
            scheme, sep, rest = one.rpartition("://")
            parts.append(one if "@" in rest else f"{scheme}{sep}{SERVICE_USER}:{password}@{rest}")
        url = ",".join(parts)
    return url


async def open_nats(url: str) -> NATS:
    """One try, no reconnects: a tool that reads once should fail at once, not retry forever
    (nats-py keeps retrying a refused first connect, so the servers are probed first)."""
    import nats

    from services.audit.reader import ReadError

    servers = url.split(",")
    if not any([await asyncio.to_thread(_answers, one) for one in servers]):
        raise ReadError(f"no NATS server answers at {without_login(url)}")

    async def quiet(_exc: Exception) -> None:
        return None

    try:
        return await asyncio.wait_for(
            nats.connect(servers=servers, name="jobstream-audit", allow_reconnect=False, connect_timeout=5,
                         max_reconnect_attempts=0, error_cb=quiet, pending_size=64 * 1024 * 1024),
            CONNECT_TIMEOUT_S,
        )  # fmt: skip
    except TimeoutError:
        raise ReadError(f"could not log in to {without_login(url)} in {CONNECT_TIMEOUT_S:.0f}s") from None


def _answers(server: str) -> bool:
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(server if "://" in server else f"nats://{server}")
    try:
        with socket.create_connection((where.hostname or "127.0.0.1", where.port or 4222), timeout=5):
            return True
    except OSError:
        return False


def without_login(url: str) -> str:
    from services.runtime.connect import without_password

    return without_password(url)


async def run_verify(url: str, domain: str | None = None, since: int | None = None) -> Report:
    """Read the log once, from `since` (default: seq 1, so a purged head shows as a gap), and check it."""
    from services.audit.checks import Auditor
    from services.audit.reader import bounds, read_stream

    nc = await open_nats(url)
    try:
        limits = await bounds(nc)
        start = since or 1
        auditor = Auditor(domain=domain, start=start, partial=start > 1)
        apply = auditor.apply
        async for batch in read_stream(nc, max(start, limits.first_seq), limits.last_seq):
            for seq, subject, data in batch:
                apply(seq, subject, data)
        return auditor.finish(limits.last_seq)
    finally:
        await nc.close()


def _print_report(report: Report, seconds: float) -> None:
    for v in report.violations:
        seqs = ", ".join(str(s) for s in v.seqs)
        typer.echo(f"VIOLATION {v.check}  {v.aggregate}: {v.message}  [seq {seqs}]")
    for first, last in report.gaps:
        missing = f"seq {first}" if first == last else f"seqs {first}..{last}"
        typer.echo(f"GAP {missing} missing (purged or deleted); audit from after it with --since")
    rate = report.events / seconds if seconds > 0 else 0.0
    span = f"seq {report.first_seq}..{report.last_seq}" if report.first_seq else "no events"
    count = len(report.violations)
    found = f"{count} violation{'' if count == 1 else 's'}"
    verdict = "log gapped" if report.gaps else found if count else "clean"
    typer.echo(
        f"audit: {report.events} events ({span}), {len(report.checked)} checks, {verdict} "
        f"({seconds:.1f}s, {rate:,.0f} events/s)"
    )


def _hint(exc: Exception) -> str:
    if "authorization" in str(exc).lower():
        return (
            f" (a `jobstream up` server takes its service login: set NATS_SERVICE_PASSWORD to the password"
            f" `up` was started with, or pass --nats-url nats://{SERVICE_USER}:PASSWORD@host:port)"
        )
    return ""


@audit_app.command("verify")
def verify(
    domain: Annotated[str | None, typer.Option("--domain", help="check only this domain's events")] = None,
    since: Annotated[
        int | None, typer.Option("--since", min=1, help="start at this stream sequence (skips earlier gaps)")
    ] = None,
    as_json: AsJson = False,
    url: NatsUrl = None,
    data_dir: DataDir = Path(".jobstream"),
) -> None:
    """Check every event of the log against the invariants (exit 0 clean, 1 violations, 3 unreadable)."""
    from services.audit.reader import ReadError

    target = nats_url(url, data_dir)
    began = time.perf_counter()
    try:
        report = asyncio.run(run_verify(target, domain, since))
    except (ReadError, OSError, TimeoutError) as exc:
        raise _fail(f"the log could not be read: {exc}") from exc
    except Exception as exc:  # nats-py's connection and API errors have no common base
        raise _fail(f"the log could not be read: {type(exc).__name__}: {exc}{_hint(exc)}") from exc
    seconds = time.perf_counter() - began
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, seconds)
    raise typer.Exit(report.exit_code)


# ---- one aggregate's history ------------------------------------------------------


async def read_history(url: str, filter_subject: str) -> list[dict[str, Any]]:
    import msgspec

    from events.store import EventStore
    from services.runtime.connect import jetstream

    nc = await open_nats(url)
    try:
        stored = await EventStore(nc, jetstream(nc)).read(filter_subject)
    finally:
        await nc.close()
    rows = []
    for s in stored:
        event = s.event
        payload = msgspec.to_builtins(event)
        rows.append(
            {"seq": s.seq, "subject": s.subject, "at": payload["at"], "type": event.type,
             "actor": event.actor, "id": event.id, "causation_id": event.causation_id, "event": payload}
        )  # fmt: skip
    return rows


def _detail(event: dict[str, Any]) -> str:
    keys: tuple[str, ...] = ("worker_id", "attempt", "tick", "reason", "outcome", "exit_code", "error")
    if event.get("type") == "fired":
        keys = ("job_id", *keys)
    shown = [f"{k}={event[k]}" for k in keys if event.get(k) not in (None, "", 0, [])]
    return " ".join(shown)[:120]


def _history(
    kind: str, aggregate_id: str, domain: str | None, as_json: bool, url: str | None, data_dir: Path
) -> None:
    from events import subjects
    from services.cli import render

    domain = domain or os.environ.get("JOBSTREAM_DOMAIN") or "prod"
    target = nats_url(url, data_dir)
    try:
        rows = asyncio.run(read_history(target, subjects.aggregate_all(domain, kind, aggregate_id)))
    except Exception as exc:  # connection, API and decode errors alike: the history is unreadable
        raise _fail(f"the log could not be read: {type(exc).__name__}: {exc}{_hint(exc)}") from exc
    if not rows:
        raise _fail(f"no {kind} {aggregate_id} in domain {domain}", EXIT_NOT_FOUND)
    if as_json:
        render.print_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("SEQ", "TIME", "TYPE", "ACTOR", "CAUSATION", "DETAIL"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["seq"]), str(r["at"]), r["type"], r["actor"], r["causation_id"] or "", _detail(r["event"])
        )
    render.console().print(table)


@audit_app.command("job")
def job(
    job_id: str,
    domain: Annotated[
        str | None, typer.Option("--domain", help="[default: JOBSTREAM_DOMAIN or prod]")
    ] = None,
    as_json: AsJson = False,
    url: NatsUrl = None,
    data_dir: DataDir = Path(".jobstream"),
) -> None:
    """A job's whole history from the log: sequence, time, type, actor, causation."""
    _history("job", job_id, domain, as_json, url, data_dir)


@audit_app.command("schedule")
def schedule(
    schedule_id: str,
    domain: Annotated[
        str | None, typer.Option("--domain", help="[default: JOBSTREAM_DOMAIN or prod]")
    ] = None,
    as_json: AsJson = False,
    url: NatsUrl = None,
    data_dir: DataDir = Path(".jobstream"),
) -> None:
    """A schedule's whole history from the log: sequence, time, type, actor, causation."""
    _history("schedule", schedule_id, domain, as_json, url, data_dir)
