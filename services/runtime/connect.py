"""One way to connect to NATS, with reconnect settings suited to long-running services."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

log = logging.getLogger(__name__)
URL_SCHEMES = ("nats", "tls", "ws", "wss")
# A silent partition (no RST) is noticed after ping_interval x max_outstanding_pings: 15 s,
# instead of nats-py's 120 s x 2. Reconnects never stop: a server restart or a cluster
# election is waited out, every RECONNECT_WAIT_S per server.
PING_INTERVAL_S = 5
MAX_OUTSTANDING_PINGS = 3
RECONNECT_WAIT_S = 0.5


class NatsUrlError(ValueError):
    pass


def nats_servers(url: str, setting: str = "NATS_URL") -> list[str]:
    """A comma-separated list of NATS URLs (a cluster's nodes), each checked, spaces dropped.
    The error names the setting and never shows a password."""
    items = [item.strip() for item in url.split(",")]
    if not any(items):
        raise NatsUrlError(
            f"{setting} is empty; give a URL like nats://127.0.0.1:4222 (or several, comma-separated)"
        )
    servers = []
    for n, item in enumerate(items, 1):
        if not item:
            raise NatsUrlError(f"{setting} has an empty item (number {n}) in {without_password(url)!r}")
        parts = urlsplit(item if "://" in item else f"nats://{item}")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in URL_SCHEMES or not parts.hostname or port == -1:
            raise NatsUrlError(
                f"{setting} item {n} ({without_password(item)!r}) is not a NATS URL like nats://host:4222"
            )
        servers.append(item)
    return servers


async def connect(
    url: str,
    name: str,
    max_reconnect_attempts: int = -1,
    login: tuple[str, str] | None = None,
    inbox_prefix: str = "_INBOX",
    errors: Callable[[Exception], None] | None = None,
    reconnected: Callable[[], None] | None = None,
) -> NATS:
    """`url`: one NATS URL or a comma-separated list (every node of a cluster), see nats_servers.
    `login`: (user, password) that do not ride in the URL, as for a domain token's worker.
    `errors` and `reconnected` let a service react to refusals, besides the log line."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)
        if errors is not None:
            errors(exc)

    async def on_reconnect() -> None:
        if reconnected is not None:
            reconnected()

    extra: dict[str, Any] = {"user": login[0], "password": login[1]} if login else {}
    return await nats.connect(
        servers=nats_servers(url),
        name=name,
        max_reconnect_attempts=max_reconnect_attempts,
        reconnect_time_wait=RECONNECT_WAIT_S,
        ping_interval=PING_INTERVAL_S,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        connect_timeout=5,
        error_cb=on_error,
        reconnected_cb=on_reconnect,
        pending_size=64 * 1024 * 1024,
        inbox_prefix=inbox_prefix,
        **extra,
    )


def jetstream(nc: NATS) -> JetStreamContext:
    return nc.jetstream(timeout=10, publish_async_max_pending=20000)


def without_password(url: str) -> str:
    """A NATS URL (or comma-separated list) with any user:password@ taken out."""
    parts = []
    for one in url.split(","):
        scheme, sep, rest = one.rpartition("://")
        parts.append(f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}")
    return ",".join(parts)
