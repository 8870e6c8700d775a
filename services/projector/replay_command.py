"""`jobstream replay`: rebuild every read model from the log into a new file, or check the live one.

`--into FILE` builds FILE from the log (through `--until-seq N`, or up to the first event
stamped after `--until TIME`), showing progress: a line rewritten in place on a terminal, a
line every 5 s otherwise. `--verify` replays up to the live file's checkpoint and compares
every log table with it by SHA-256 (exit 1 and the first differing rows on any difference).
Like `jobstream audit`, it reads the log straight from NATS, so it needs a login that reads
every stream (`--nats-url`, or `--data-dir` of a `jobstream up`).

Exit codes: 0 done (or equal), 1 the live read model differs, 2 bad input, 3 log unreadable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.audit.command import EXIT_UNREADABLE, DataDir, NatsUrl, nats_url, open_nats

if TYPE_CHECKING:
    from projections.replay import Progress
    from projections.verify import TableCheck

EXIT_DIFFERENT = 1
EXIT_BAD_INPUT = 2
LOG_EVERY_S = 5.0
TTY_EVERY_S = 0.5


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise _fail(
            f"--until: {text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)", EXIT_BAD_INPUT
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Reporter:
    """Shows a replay's progress on stderr: in place on a terminal, else a line every 5 s."""

    def __init__(self, label: str, tty: bool | None = None, every_s: float | None = None) -> None:
        self.label = label
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.every_s = every_s if every_s is not None else TTY_EVERY_S if self.tty else LOG_EVERY_S
        self._next = 0.0

    def __call__(self, prog: Progress) -> None:
        now = time.monotonic()
        if now < self._next and prog.finished is None:
            return
        self._next = now + self.every_s
        text = f"{self.label}: {prog.describe()}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text + ("\n" if prog.finished is not None else ""))
        else:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            sys.stderr.write(f"{stamp} {text}\n")
        sys.stderr.flush()


async def _replay(
    url: str, into: Path, until_seq: int | None, until: datetime | None, label: str
) -> Progress:
    from projections.replay import replay

    nc = await open_nats(url)
    try:
        return await replay(nc, into, until_seq=until_seq, until=until, on_progress=Reporter(label))
    finally:
        await nc.close()


def _run(url: str, into: Path, until_seq: int | None, until: datetime | None, label: str) -> Progress:
    from services.audit.reader import ReadError

    try:
        return asyncio.run(_replay(url, into, until_seq, until, label))
    except (ReadError, OSError, TimeoutError) as exc:
        raise _fail(f"the log could not be read: {exc}", EXIT_UNREADABLE) from exc
    except Exception as exc:  # nats-py's connection and API errors have no common base
        raise _fail(f"the log could not be read: {type(exc).__name__}: {exc}", EXIT_UNREADABLE) from exc


@contextlib.contextmanager
def _scratch(into: Path | None) -> Iterator[Path]:
    """Where a verify replays to: `into` if given (kept), else a temporary file (removed)."""
    if into is not None:
        yield into
        return
    with tempfile.TemporaryDirectory(prefix="jobstream-verify-") as tmp:
        yield Path(tmp) / "replay.duckdb"


def replay(
    into: Annotated[
        Path | None, typer.Option("--into", help="DuckDB file to build (must not exist yet)")
    ] = None,
    until_seq: Annotated[
        int | None, typer.Option("--until-seq", min=1, help="stop after this stream sequence")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="stop before the first event stamped after this ISO time")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="replay to the live model's checkpoint and compare (exit 1 if not equal)"
        ),
    ] = False,
    db: Annotated[
        Path,
        typer.Option("--db", help="the live read model --verify compares with (not held by a running API)"),
    ] = Path(".jobstream") / "projection.duckdb",
    from_api: Annotated[
        bool,
        typer.Option(
            "--api",
            help="--verify the read model a running API holds: it sends a consistent snapshot "
            "(JOBSTREAM_URL; the admin token from JOBSTREAM_TOKEN or --data-dir)",
        ),
    ] = False,
    url: NatsUrl = None,
    data_dir: DataDir = Path(".jobstream"),
) -> None:
    """Rebuild every read model from the log into a new DuckDB file, or --verify the live one."""
    if until_seq is not None and until is not None:
        raise _fail("give --until-seq or --until, not both", EXIT_BAD_INPUT)
    if verify and (until_seq is not None or until is not None):
        raise _fail(
            "--verify replays to the live model's checkpoint: drop --until-seq/--until", EXIT_BAD_INPUT
        )
    if not verify and into is None:
        raise _fail("give --into FILE (a new DuckDB file), or --verify", EXIT_BAD_INPUT)
    if into is not None and (into.exists() or into.with_name(into.name + ".wal").exists()):
        raise _fail(
            f"{into} exists: replay builds a new file (remove it, or pick another name)", EXIT_BAD_INPUT
        )
    if from_api and not verify:
        raise _fail("--api goes with --verify", EXIT_BAD_INPUT)
    if verify and from_api:
        with _snapshot(data_dir) as snap:
            _verify(nats_url(url, data_dir), snap, into, "the API's read model")
        return
    if verify:
        _verify(nats_url(url, data_dir), db, into, str(db))
        return
    assert into is not None
    from projections.replay import discard, swap_in

    target = nats_url(url, data_dir)
    into.parent.mkdir(parents=True, exist_ok=True)
    partial = into.with_name(into.name + ".partial")
    discard(partial)
    try:
        prog = _run(target, partial, until_seq, parse_time(until) if until else None, "replay")
    except BaseException:
        discard(partial)
        raise
    swap_in(partial, into)
    typer.echo(
        f"replayed {prog.events:,} events into {into} up to seq {prog.seq:,} in {prog.elapsed_s:.1f}s "
        f"({prog.rate:,.0f} events/s, {prog.undecodable} undecodable skipped)"
    )


@contextlib.contextmanager
def _snapshot(data_dir: Path) -> Iterator[Path]:
    """The running API's read model, downloaded into a temporary file (removed after)."""
    import os

    import httpx

    from services.cli.client import Client, ClientError

    token = os.environ.get("JOBSTREAM_TOKEN")
    if not token and (data_dir / "admin_token").is_file():
        token = (data_dir / "admin_token").read_text().strip()
    client = Client.from_env(token=token)
    with tempfile.TemporaryDirectory(prefix="jobstream-verify-") as tmp:
        path = Path(tmp) / "live.duckdb"
        try:
            client.download("/admin/read-model/snapshot", path)
        except ClientError as exc:
            raise _fail(f"the API sent no snapshot: {exc}", exc.exit_code) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise _fail(f"the API sent no snapshot: {exc}", EXIT_UNREADABLE) from exc
        yield path


def _verify(url: str, db: Path, into: Path | None, name: str) -> None:
    import duckdb

    from projections import schema
    from projections.verify import compare

    if not db.exists():
        raise _fail(
            f"{db} does not exist: nothing to verify (give the live read model with --db)", EXIT_BAD_INPUT
        )
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise _fail(
            f"cannot open {db} read-only ({exc}); a running API or projector holds it: "
            "give --api to verify the API's own read model, or stop it",
            EXIT_BAD_INPUT,
        ) from exc
    try:
        version = con.execute("SELECT seq FROM checkpoint WHERE name = 'schema'").fetchone()
        live_seq = schema.checkpoint(con)
    except duckdb.Error as exc:
        raise _fail(f"{db} is not a jobstream read model: {exc}", EXIT_BAD_INPUT) from exc
    finally:
        con.close()
    if version is None or version[0] != schema.SCHEMA_VERSION:
        found = version[0] if version else "unknown"
        raise _fail(
            f"{db} has schema version {found}, this jobstream writes {schema.SCHEMA_VERSION}: "
            "there is nothing to compare; rebuild it with `jobstream rebuild`",
            EXIT_BAD_INPUT,
        )
    if live_seq == 0:
        raise _fail(f"{db} holds no events yet (checkpoint 0): nothing to verify", EXIT_BAD_INPUT)
    with _scratch(into) as scratch:
        prog = _run(url, scratch, live_seq, None, "replay --verify")
        if prog.seq < live_seq:
            raise _fail(
                f"the log ends at seq {prog.seq}, before the live checkpoint {live_seq}", EXIT_DIFFERENT
            )
        checks = compare(db, scratch)
    _print_checks(checks, name, live_seq)
    if not all(c.equal for c in checks):
        raise typer.Exit(EXIT_DIFFERENT)


def _print_checks(checks: list[TableCheck], db: str, live_seq: int) -> None:
    for c in checks:
        verdict = "equal" if c.equal else "DIFFERENT"
        typer.echo(f"{c.table:<14} {c.rows[0]:>10,} rows  sha256 {c.hashes[0][:16]}  {verdict}")
        if not c.equal:
            typer.echo(f"  replay: {c.rows[1]:,} rows, sha256 {c.hashes[1][:16]}")
            for row in c.only_in_first:
                typer.echo(f"  only in live:   {row}")
            for row in c.only_in_second:
                typer.echo(f"  only in replay: {row}")
    bad = [c.table for c in checks if not c.equal]
    if bad:
        typer.echo(f"verify: {db} differs from the log replayed to seq {live_seq:,} in {', '.join(bad)}")
    else:
        typer.echo(f"verify: {db} equals the log replayed to seq {live_seq:,} ({len(checks)} tables)")
