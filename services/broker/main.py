"""`jobstream broker-auth`: follow the domains in the log; rewrite the server's logins and reload it.

A revoked, expired or rotated-out token loses its broker login within about a second
(one fold, one file write, SIGHUP); nats-server closes connections whose login is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from nats.aio.msg import Msg
from nats.js import api

from events.base import utcnow
from events.codec import DecodeError, decode_event
from events.domain import AnyDomainEvent, DomainEvent, DomainState, evolve_domain
from events.streams import EVENTS_STREAM
from services.runtime import broker_auth
from services.runtime.connect import connect, jetstream

log = logging.getLogger(__name__)
SETTLE_S = 0.2
IDLE_S = 5.0


async def serve(nats_url: str, conf: Path, server_pid: int, service_password: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await connect(nats_url, "broker-auth")
    domains: dict[str, DomainState] = {}
    changed = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        try:
            event = decode_event(msg.subject, msg.data)
        except DecodeError as exc:
            log.error("skipping undecodable event on %s: %s", msg.subject, exc)
            return
        if isinstance(event, DomainEvent):
            domain_event: AnyDomainEvent = event  # type: ignore[assignment]
            after = evolve_domain(domains.get(event.domain), domain_event)
            if after is not None:
                domains[event.domain] = after
                changed.set()

    sub = await jetstream(nc).subscribe(
        "ev.*.domain.>", stream=EVENTS_STREAM, cb=on_event, ordered_consumer=True,
        deliver_policy=api.DeliverPolicy.ALL,
    )  # fmt: skip
    changed.set()
    try:
        while not stop.is_set():
            now = utcnow()
            due = broker_auth.next_change(domains, now)
            wait = IDLE_S if due is None else min(IDLE_S, max(0.0, (due - now).total_seconds()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await changed.wait()
            await asyncio.sleep(SETTLE_S)  # fold a burst of events into one reload
            changed.clear()
            text = broker_auth.render(service_password, domains, utcnow())
            if broker_auth.write(conf, text):
                os.kill(server_pid, signal.SIGHUP)
                log.info("broker logins updated: %d", text.count('"user"'))
    finally:
        await sub.unsubscribe()
        await nc.close()


def run(nats_url: str, conf: Path, server_pid: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s broker-auth %(levelname)s %(message)s")
    password = os.environ.get("NATS_SERVICE_PASSWORD", "")
    if not password:
        raise SystemExit("error: broker-auth needs NATS_SERVICE_PASSWORD")
    asyncio.run(serve(nats_url, conf, server_pid, password))
