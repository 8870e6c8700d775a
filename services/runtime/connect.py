"""One way to connect to NATS, with reconnect settings suited to long-running services."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

log = logging.getLogger(__name__)


async def connect(
    url: str,
    name: str,
    max_reconnect_attempts: int = -1,
    login: tuple[str, str] | None = None,
    inbox_prefix: str = "_INBOX",
    errors: Callable[[Exception], None] | None = None,
    reconnected: Callable[[], None] | None = None,
) -> NATS:
    """`login`: (user, password) that do not ride in the URL, as for a domain token's worker.
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
        servers=url.split(","),
        name=name,
        max_reconnect_attempts=max_reconnect_attempts,
        reconnect_time_wait=0.5,
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
