"""`jobstream status`: is everything a user needs there, and if not, which part and what to do."""

from __future__ import annotations

import fcntl
import json
import socket
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer

from services.cli.client import EXIT_AUTH, EXIT_UNAVAILABLE, Client, ClientError

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _broker_reachable(url: str) -> Check:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        return Check("broker from here", False, f"{host}:{port} does not answer: {exc}")
    return Check("broker from here", True, f"{host}:{port} accepts connections")


def _data_dir_lock(data_dir: Path) -> Check | None:
    """Who owns this data dir: the `up` holding the flock on its up.lock, as the file names it."""
    path = data_dir / "up.lock"
    if not path.is_file():
        return None
    with open(path) as fh:
        try:
            owner: dict[str, Any] = json.loads(fh.read() or "{}")
        except ValueError:
            owner = {}
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            where = f", API {owner['api_url']}" if owner.get("api_url") else ""
            return Check(
                "data dir", True, f"{data_dir}: in use by jobstream up pid {owner.get('pid', '?')}{where}"
            )
        fcntl.flock(fh, fcntl.LOCK_UN)
    return Check("data dir", True, f"{data_dir}: not in use (no jobstream up holds it)")


def run_checks(client: Client, data_dir: Path) -> list[Check]:
    checks: list[Check] = []
    try:
        health = httpx.get(f"{client.url}/health", timeout=PROBE_TIMEOUT_S)
        is_ours = health.status_code == 200 and health.json().get("status") == "ok"
    except (httpx.HTTPError, ValueError) as exc:
        checks.append(
            Check("API", False, f"{client.url} does not answer ({exc}); is `jobstream up` running?")
        )
        return checks
    if not is_ours:
        checks.append(Check("API", False, f"{client.url} answers, but is not a jobstream API base URL"))
        return checks
    checks.append(Check("API", True, f"{client.url} answers"))
    ready = httpx.get(f"{client.url}/ready", timeout=PROBE_TIMEOUT_S)
    body = ready.json() if ready.headers.get("content-type", "").startswith("application/json") else {}
    checks.append(
        Check(
            "API ready",
            ready.status_code == 200,
            str(body.get("reason") or f"read model lag {body.get('projection_lag')}"),
        )
    )
    try:
        info = client.get("/info")
    except ClientError as exc:
        checks.append(Check("token", False, str(exc)))
        return checks
    who = "admin token" if info["admin"] else f"token of domain {info['domain']}"
    checks.append(Check("token", True, f"{who} (acting in domain {info['domain']})"))
    broker = info["broker"]
    checks.append(
        Check(
            "broker from the API",
            bool(broker["connected"]),
            f"{broker['url']} (nats-server {broker['server_version']})" if broker["connected"] else
            f"the API is not connected to {broker['url']}",
        )
    )  # fmt: skip
    checks.append(_broker_reachable(broker["url"]))
    checks.append(
        Check(
            "read model",
            int(info["projection_lag"]) < 1000,
            f"{info['projection_lag']} events behind the log",
        )
    )
    workers = client.get("/workers")
    active = [w for w in workers if w.get("status") == "active"]
    names = ", ".join(w["id"] for w in active[:5]) + (" …" if len(active) > 5 else "")
    detail = f"{len(active)} active of {len(workers)} in domain {info['domain']}"
    detail += f": {names}" if names else "; jobs will stay pending until a worker joins"
    checks.append(Check("workers", bool(active), detail))
    lock = _data_dir_lock(data_dir)
    if lock is not None:
        checks.append(lock)
    mine = version("jobstream")
    checks.append(Check("versions", mine == info["version"], f"CLI {mine}, API {info['version']}"))
    return checks


def status(
    url: Annotated[str | None, typer.Option("--url", envvar="JOBSTREAM_URL", help="API base URL")] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="JOBSTREAM_TOKEN", help="bearer token")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="data dir of a local `jobstream up`")] = Path(".jobstream"),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Check the API, the token, the broker, the read model, the workers and the data dir."""
    checks = run_checks(Client.from_env(url, token), data_dir)
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            typer.echo(f"{'ok ' if c.ok else 'BAD'}  {c.name.ljust(width)}  {c.detail}")
    failed = [c for c in checks if not c.ok]
    if any(c.name == "token" for c in failed):
        raise typer.Exit(EXIT_AUTH)
    if failed:
        raise typer.Exit(EXIT_UNAVAILABLE)
