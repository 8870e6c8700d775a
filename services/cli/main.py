"""`jobstream`: one command for the processes (up, api, dispatcher, scheduler, worker) and the API client."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from services.audit.command import audit_app
from services.cli import client_commands
from services.cli.events_command import events_app
from services.cli.sql_command import sql
from services.cli.status_command import status
from services.cli.streams_command import streams_app
from services.cli.trace_command import trace_job
from services.projector.replay_command import replay
from services.runtime.hardening import SERVICE_COMMANDS, forbid_peeking

app = typer.Typer(
    rich_markup_mode=None,
    help="jobstream: distributed jobs on a NATS JetStream event log.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
client_commands.register(app)
app.command()(status)
app.command()(sql)
app.add_typer(audit_app, name="audit")
app.add_typer(streams_app, name="streams")
app.command()(replay)
app.command("trace")(trace_job)
app.add_typer(events_app, name="events")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"jobstream {version('jobstream')}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
    domain: str | None = typer.Option(
        None, "--domain", envvar="JOBSTREAM_DOMAIN", help="domain the admin token acts in [default: prod]"
    ),
) -> None:
    """jobstream: distributed jobs on a NATS JetStream event log."""
    if ctx.invoked_subcommand in SERVICE_COMMANDS:
        forbid_peeking()
    if domain:
        os.environ["JOBSTREAM_DOMAIN"] = domain


DEFAULT_DATA_DIR = Path(".jobstream")


@app.command()
def up(
    host: str = typer.Option("127.0.0.1", help="address the API (and embedded NATS) listen on"),
    port: int | None = typer.Option(None, help="API port [default: 8000, or a free one if taken]"),
    nats_port: int | None = typer.Option(None, help="embedded NATS port [default: 4222, or a free one]"),
    nats_url: str | None = typer.Option(None, help="use this NATS server instead of starting one"),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, help="NATS store, read model, admin token"),
    workers: int = typer.Option(1, min=0, help="local workers to start"),
    worker_concurrency: int = typer.Option(4, min=1, help="max concurrency of each local worker"),
    replicas: int | None = typer.Option(
        None, min=1, max=5, help="copies of new streams [env JOBSTREAM_REPLICAS, default 1, 3 if clustered]"
    ),
    cluster: int = typer.Option(1, min=1, max=5, help="embedded NATS nodes (3: a cluster on this host)"),
) -> None:
    """Start the whole system: NATS, API with projector, dispatcher, scheduler and local workers."""
    from services.cli.up import UpOptions, run_up

    raise typer.Exit(
        run_up(
            UpOptions(
                host=host, port=port, nats_port=nats_port, nats_url=nats_url, data_dir=data_dir,
                workers=workers, worker_concurrency=worker_concurrency, replicas=replicas,
                cluster=cluster,
            )
        )
    )  # fmt: skip


@app.command()
def api(
    nats_url: str = typer.Option("nats://127.0.0.1:4222", envvar="NATS_URL"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    db: Path = typer.Option(DEFAULT_DATA_DIR / "projection.duckdb", help="DuckDB file of the read model"),
) -> None:
    """Run the REST API with its projector."""
    import uvicorn

    from services.api.app import create_app
    from services.api.settings import ApiSettings

    try:
        settings = ApiSettings.from_env(nats_url, db)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    db.parent.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)


@app.command()
def dispatcher(
    nats_url: str = typer.Option("nats://127.0.0.1:4222", envvar="NATS_URL"),
    max_running_per_domain: int = typer.Option(
        0,
        min=0,
        envvar="MAX_RUNNING_PER_DOMAIN",
        help="at most this many jobs dispatched or running per domain; 0 = unlimited",
    ),
) -> None:
    """Run a dispatcher replica (one leader acts at a time)."""
    from services.dispatcher.main import run

    run(nats_url, max_running_per_domain)


@app.command()
def scheduler(nats_url: str = typer.Option("nats://127.0.0.1:4222", envvar="NATS_URL")) -> None:
    """Run a scheduler replica (one leader fires at a time; the others stand by)."""
    from services.scheduler.main import run

    run(nats_url)


@app.command("broker-auth", hidden=True)
def broker_auth(
    conf: Path = typer.Option(..., help="the nats-server authorization file to keep up to date"),
    server_pid: int | None = typer.Option(None, help="the nats-server to reload (SIGHUP)"),
    server_pid_file: list[Path] | None = typer.Option(
        None, help="or its pid file, read before each reload (once per node of a cluster)"
    ),
    nats_url: str = typer.Option("nats://127.0.0.1:4222", envvar="NATS_URL"),
) -> None:
    """Keep the embedded server's logins in step with domains and tokens (started by `up`)."""
    from services.broker.main import run

    server = server_pid_file or server_pid
    if server is None:
        raise typer.BadParameter("give --server-pid or --server-pid-file")
    run(nats_url, conf, server)


@app.command()
def projector(
    nats_url: str = typer.Option("nats://127.0.0.1:4222", envvar="NATS_URL"),
    db: Path = typer.Option(DEFAULT_DATA_DIR / "projection.duckdb", help="DuckDB file of the read model"),
) -> None:
    """Keep a DuckDB read model up to date on its own, e.g. for SQL analytics."""
    from services.projector.main import run

    db.parent.mkdir(parents=True, exist_ok=True)
    run(nats_url, db)


@app.command()
def rebuild(
    nats_url: str = typer.Option("nats://127.0.0.1:4222", envvar="NATS_URL"),
    db: Path = typer.Option(DEFAULT_DATA_DIR / "projection.duckdb", help="DuckDB file to rebuild"),
) -> None:
    """Replay the whole event log into a fresh read model and swap it in (stop the API first)."""
    from services.projector.main import run_rebuild

    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        seq = run_rebuild(nats_url, db)
    except Exception as exc:
        typer.echo(f"error: rebuild failed: {exc}", err=True)
        raise typer.Exit(5) from exc
    typer.echo(f"rebuilt {db} from the log up to seq {seq}")


@app.command()
def worker(
    nats_url: str | None = typer.Option(None, envvar="NATS_URL", help="[default: nats://127.0.0.1:4222]"),
    id: str | None = typer.Option(None, "--id", help="worker id [env WORKER_ID, default host-pid]"),
    domain: str | None = typer.Option(None, help="[env WORKER_DOMAIN, default prod]"),
    tags: str | None = typer.Option(None, help="comma-separated [env WORKER_TAGS]"),
    allowed_users: str | None = typer.Option(None, help="comma-separated [env ALLOWED_USERS]"),
    max_concurrency: int | None = typer.Option(None, help="[env MAX_CONCURRENCY, default 4]"),
    grace_s: float | None = typer.Option(None, help="seconds running jobs get to finish on SIGTERM [30]"),
) -> None:
    """Run a worker that takes jobs from the dispatcher."""
    from services.worker.main import run
    from services.worker.settings import SettingsError, from_env

    try:
        settings = from_env(nats_url, id, domain, tags, allowed_users, max_concurrency, grace_s)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run(settings)
