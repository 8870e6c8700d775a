"""`jobstream broker-auth`: what domain tokens may do at the broker, kept in step with the log.

- Follows the domains: rewrites the server's accounts file and reloads it (SIGHUP). A revoked,
  expired or rotated-out token loses its login within about a second; nats-server closes
  connections whose login is gone.
- Follows worker registrations: creates the pull consumer of a worker that logs in with a
  domain token (tokens may not create consumers: a consumer's config could aim deliveries
  anywhere) and lets that domain's tokens pull from it and ack it; a `stopped` worker's
  rights go again.
- Answers read requests (`rd.…`) for those workers, which may not use direct gets, and
  takes in what they publish for the streams (`in.…`, see ingress.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from events.base import utcnow
from events.codec import DecodeError, decode_event
from events.domain import AnyDomainEvent, DomainEvent, DomainState, evolve_domain
from events.store import EventStore
from events.streams import EVENTS_STREAM, FOLLOW_IDLE_HEARTBEAT_S, worker_consumer, worker_consumer_name
from events.worker import Registered, Stopped
from services.broker.ingress import serve_ingress
from services.broker.reads import serve_reads
from services.runtime import broker_auth
from services.runtime.broker_auth import SERVICE_USER
from services.runtime.connect import connect, jetstream
from services.runtime.lifecycle import until_stopped
from services.runtime.nats_server import config_problem

log = logging.getLogger(__name__)
SETTLE_S = 0.2
# Each registered worker costs a consumer and two permissions on every token of its domain.
MAX_WORKERS_PER_DOMAIN = 1000
IDLE_S = 5.0


@dataclass
class Seen:
    """What the log says so far: domains, and each domain's registered workers."""

    domains: dict[str, DomainState] = field(default_factory=dict)
    # domain -> worker id -> (sequence of its `registered`, max concurrency)
    workers: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    unsure: set[tuple[str, str]] = field(default_factory=set)  # consumers to check or create

    def apply(self, seq: int, event: object) -> bool:
        """Fold one event in; True when the rendering may change."""
        if isinstance(event, DomainEvent):
            domain_event: AnyDomainEvent = event  # type: ignore[assignment]
            after = evolve_domain(self.domains.get(event.domain), domain_event)
            if after is not None:
                self.domains[event.domain] = after
            return True
        if isinstance(event, Registered):
            known = self.workers.setdefault(event.domain, {})
            if event.worker_id not in known and len(known) >= MAX_WORKERS_PER_DOMAIN:
                log.warning("domain %s has %d registered workers; %s gets no consumer until some stop",
                            event.domain, len(known), event.worker_id)  # fmt: skip
                return False
            known[event.worker_id] = (seq, event.max_concurrency)
            self.unsure.add((event.domain, event.worker_id))
            return True
        if isinstance(event, Stopped):
            self.workers.get(event.domain, {}).pop(event.worker_id, None)
            self.unsure.discard((event.domain, event.worker_id))
            return True
        return False

    def worker_ids(self) -> dict[str, set[str]]:
        return {d: set(ws) for d, ws in self.workers.items()}


async def ensure_consumers(js: JetStreamContext, seen: Seen) -> None:
    """Create the consumers of newly registered workers; an existing one keeps its position."""
    for domain, worker_id in sorted(seen.unsure):
        registered = seen.workers.get(domain, {}).get(worker_id)
        if registered is None:
            continue
        try:
            await js.consumer_info(EVENTS_STREAM, worker_consumer_name(domain, worker_id))
        except NotFoundError:
            seq, max_concurrency = registered
            config = worker_consumer(domain, worker_id, max_concurrency, start_seq=seq)
            try:
                await js.add_consumer(EVENTS_STREAM, config)
            except BadRequestError:
                pass  # created meanwhile by the worker itself
            except Exception as exc:  # one failure must not hold the others back
                log.warning("no consumer yet for worker %s of %s: %s", worker_id, domain, exc)
                continue
        except Exception as exc:
            log.warning("cannot look up the consumer of worker %s of %s: %s", worker_id, domain, exc)
            continue
        seen.unsure.discard((domain, worker_id))


def server_pid(server: int | Path) -> int | None:
    """The server's pid: given, or read from its pid file (None while there is none)."""
    if isinstance(server, int):
        return server
    try:
        return int(server.read_text().strip())
    except (OSError, ValueError):
        return None


def reload_server(server: int | Path) -> int | None:
    """SIGHUP the server; the pid reloaded, or None when it is gone (a restarting server reads
    the file as it starts, and the next tick reloads the new pid anyway)."""
    pid = server_pid(server)
    if pid is None:
        log.warning("no nats-server pid in %s yet; reloading on the next tick", server)
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        log.warning("cannot reload nats-server (pid %d): %s; trying again on the next tick", pid, exc)
        return None
    return pid


Servers = int | Path | Sequence[int | Path]


def _each(servers: Servers) -> list[int | Path]:
    return [servers] if isinstance(servers, int | Path) else list(servers)


def reload_servers(servers: Servers) -> tuple[int | None, ...]:
    """Reload every node (a cluster's nodes each read the logins file)."""
    return tuple(reload_server(one) for one in _each(servers))


def stale(servers: Servers, reloaded: tuple[int | None, ...] | None) -> bool:
    """Whether a node runs that has not been reloaded with the current file (it restarted)."""
    if reloaded is None:
        return True
    now = tuple(server_pid(one) for one in _each(servers))
    return any(pid is not None and pid != done for pid, done in zip(now, reloaded, strict=True))


async def serve(
    nats_url: str, conf: Path, server: Servers, service_password: str, stop: asyncio.Event
) -> None:
    """`server`: the nats-server's pid, or its pid file (read before each reload, so that a
    server restarted by `up` is followed), or those of every node of a cluster.
    `service_password` may be the password or its bcrypt hash; the config only ever gets the
    hash, made once here so that an unchanged state renders the same text."""
    service_hash = broker_auth.password_hash(service_password)
    nc = await connect(nats_url, "broker-auth")
    js = jetstream(nc)
    seen = Seen()
    changed = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        try:
            event = decode_event(msg.subject, msg.data)
        except DecodeError as exc:
            log.error("skipping undecodable event on %s: %s", msg.subject, exc)
            return
        if seen.apply(msg.metadata.sequence.stream, event):
            changed.set()

    subs = [
        await js.subscribe(
            subject,
            stream=EVENTS_STREAM,
            cb=on_event,
            ordered_consumer=True,
            idle_heartbeat=FOLLOW_IDLE_HEARTBEAT_S,
            deliver_policy=api.DeliverPolicy.ALL,
        )
        for subject in ("ev.*.domain.>", "ev.*.worker.*.registered", "ev.*.worker.*.stopped")
    ]
    reads = await serve_reads(nc, EventStore(nc, js))
    ingress = await serve_ingress(nc)
    changed.set()
    reloaded: tuple[int | None, ...] | None = None  # the server pids that last got the current file
    try:
        while not stop.is_set():
            now = utcnow()
            due = broker_auth.next_change(seen.domains, now)
            wait = IDLE_S if due is None else min(IDLE_S, max(0.0, (due - now).total_seconds()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await changed.wait()
            await asyncio.sleep(SETTLE_S)  # fold a burst of events into one reload
            changed.clear()
            await ensure_consumers(js, seen)  # what fails is tried again on the next change or tick
            text = broker_auth.render({SERVICE_USER: service_hash}, seen.domains, utcnow(), seen.worker_ids())
            if conf.exists() and conf.read_text() == text:
                if stale(server, reloaded):
                    reloaded = reload_servers(server)  # a new server (restarted): make sure it has it
                continue  # nothing changed: no check, no write, no reload
            problem = await asyncio.to_thread(config_problem, text, conf.with_name(conf.name + ".check"))
            if problem is not None:
                log.error("not reloading the broker: the rendered config is refused: %s", problem)
                continue
            broker_auth.write(conf, text)
            reloaded = reload_servers(server)
            log.info("broker logins updated: %d", text.count('"user"'))
    finally:
        await reads.unsubscribe()
        await ingress.unsubscribe()
        for sub in subs:
            await sub.unsubscribe()
        await nc.close()


def run(nats_url: str, conf: Path, server: Servers) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s broker-auth %(levelname)s %(message)s")
    password = os.environ.get("NATS_SERVICE_PASSWORD", "")
    if not password:
        raise SystemExit("error: broker-auth needs NATS_SERVICE_PASSWORD")
    asyncio.run(until_stopped(lambda stop: serve(nats_url, conf, server, password, stop)))
