"""`jobstream streams replicas N`: the one explicit way to change how many copies the streams have.

Every service provisions the streams as it starts, but only ever raises their replicas (a
service started with the default must not turn an R3 log back into R1); lowering is done here.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # the CLI imports NATS only when this command runs
    from nats.js import api

MAX_REPLICAS = 5  # events.streams.MAX_REPLICAS

streams_app = typer.Typer(
    rich_markup_mode=None,
    help="jobstream's JetStream streams (needs the service login).",
    no_args_is_help=True,
)


async def _streams(nats_url: str) -> list[api.StreamInfo]:
    from events.streams import jobstream_streams
    from services.runtime.connect import connect, jetstream

    nc = await connect(nats_url, "streams-cli", max_reconnect_attempts=0)
    try:
        return await jobstream_streams(jetstream(nc))
    finally:
        await nc.close()


async def _apply(nats_url: str, replicas: int, streams: list[api.StreamInfo]) -> None:
    from events.streams import set_replicas
    from services.runtime.connect import connect, jetstream

    nc = await connect(nats_url, "streams-cli", max_reconnect_attempts=0)
    try:
        await set_replicas(jetstream(nc), replicas, streams)
    finally:
        await nc.close()


def plan(streams: list[api.StreamInfo], replicas: int) -> list[str]:
    """One line per stream whose replicas change: `NAME  before -> after`."""
    return [
        f"{info.config.name}  {info.config.num_replicas or 1} -> {replicas}"
        for info in streams
        if (info.config.num_replicas or 1) != replicas
    ]


@streams_app.command("replicas")
def replicas(
    count: int = typer.Argument(
        ..., min=1, max=MAX_REPLICAS, help="copies of every stream and the lease bucket"
    ),
    yes: bool = typer.Option(False, "--yes", help="change them without asking"),
    nats_url: str = typer.Option("nats://127.0.0.1:4222", envvar="NATS_URL"),
) -> None:
    """Set the replicas of every jobstream stream and the lease bucket (lowering included)."""
    from events.streams import REPLICAS_ENV
    from services.runtime.connect import without_password

    where = without_password(nats_url)
    try:
        streams = asyncio.run(_streams(nats_url))
    except Exception as exc:
        typer.echo(f"error: cannot list the streams at {where}: {exc}", err=True)
        raise typer.Exit(5) from exc
    if not streams:
        typer.echo(f"error: no jobstream streams at {where} (another server or account?)", err=True)
        raise typer.Exit(5)
    changes = plan(streams, count)
    if not changes:
        typer.echo(f"every jobstream stream at {where} has {count} replica(s) already")
        return
    typer.echo("\n".join(changes))
    if not yes:
        if not sys.stdin.isatty():
            typer.echo("error: pass --yes to change replicas without a terminal", err=True)
            raise typer.Exit(2)
        typer.confirm(f"change these at {where}?", abort=True)
    try:
        asyncio.run(_apply(nats_url, count, streams))
    except Exception as exc:
        typer.echo(f"error: changing replicas failed: {exc}", err=True)
        raise typer.Exit(5) from exc
    typer.echo(f"done; set {REPLICAS_ENV}={count} for every service, so that new streams get {count} too")
