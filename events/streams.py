"""Stream, consumer and bucket definitions, declared once and provisioned idempotently."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from events.subjects import EVENTS_PREFIX, HEARTBEATS_PREFIX, LOGS_PREFIX, dispatches_for

EVENTS_STREAM = "EVENTS"
HEARTBEATS_STREAM = "HEARTBEATS"
# Output lives in one stream per domain, so each domain's output has its own byte bound.
# "LOGS" (all domains, `log.>`) is where output was kept before; still read, no longer written.
LEGACY_LOGS_STREAM = "LOGS"
LOGS_STREAM_PREFIX = "LOGS_"
LEGACY_LOGS_PARKED_SUBJECT = "jobstream.legacy-logs"  # nothing publishes here
LEASES_BUCKET = "jobstream_leases"

DUPLICATE_WINDOW_S = 120.0
HEARTBEAT_MAX_AGE_S = 600.0
DEFAULT_LOGS_MAX_AGE_S = 7 * 24 * 3600.0
# Output is bounded by default (oldest discarded first): one chatty job must not fill the
# server's disk, and one chatty domain must not push the others' output out.
DEFAULT_LOGS_MAX_BYTES = 8 * 1024**3
DEFAULT_LOGS_DOMAIN_MAX_BYTES = 2 * 1024**3
LOGS_MAX_BYTES_ENV = "JOBSTREAM_LOGS_MAX_BYTES"
LOGS_DOMAIN_MAX_BYTES_ENV = "JOBSTREAM_LOGS_DOMAIN_MAX_BYTES"


def _bytes_from_env(name: str, default: int) -> int:
    """A byte count from the environment (`_` allowed as a separator; -1: unbounded)."""
    value = os.environ.get(name, "").strip().replace("_", "")
    if not value:
        return default
    try:
        parsed = int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number of bytes, got {value!r}") from exc
    if parsed == 0 or parsed < -1:
        raise ValueError(f"{name} must be positive (or -1 for unbounded), got {parsed}")
    return parsed


def logs_max_bytes_from_env() -> int:
    """JOBSTREAM_LOGS_MAX_BYTES: the bound on all domains' output together."""
    return _bytes_from_env(LOGS_MAX_BYTES_ENV, DEFAULT_LOGS_MAX_BYTES)


def logs_domain_max_bytes_from_env() -> int:
    """JOBSTREAM_LOGS_DOMAIN_MAX_BYTES: the bound on one domain's output."""
    return _bytes_from_env(LOGS_DOMAIN_MAX_BYTES_ENV, DEFAULT_LOGS_DOMAIN_MAX_BYTES)


LEASE_TTL_S = 5.0
MAX_EVENT_BYTES = 1024 * 1024
WORKER_CONSUMER_INACTIVE_S = 24 * 3600.0
WORKER_ACK_WAIT_S = 30.0


@dataclass(frozen=True)
class Retention:
    """How long the log and the output are kept; 0 age means forever, -1 bytes unbounded."""

    events_max_age_s: float = 0.0
    events_max_bytes: int = -1
    logs_max_age_s: float = DEFAULT_LOGS_MAX_AGE_S
    logs_max_bytes: int = field(default_factory=logs_max_bytes_from_env)
    logs_domain_max_bytes: int = field(default_factory=logs_domain_max_bytes_from_env)

    def domain_logs_bytes(self, domains: int) -> int:
        """One domain's bound: its own, and an equal share of the total (-1: unbounded)."""
        bounds = [self.logs_domain_max_bytes]
        if self.logs_max_bytes > 0:
            bounds.append(max(1, self.logs_max_bytes // max(1, domains)))
        return min((b for b in bounds if b > 0), default=-1)


def stream_configs(retention: Retention | None = None) -> list[api.StreamConfig]:
    retention = retention or Retention()  # read the environment now, not at import
    return [
        api.StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{EVENTS_PREFIX}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=retention.events_max_age_s or None,
            max_bytes=retention.events_max_bytes,
            max_msg_size=MAX_EVENT_BYTES,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_direct=True,
            discard=api.DiscardPolicy.OLD,
        ),
        api.StreamConfig(
            name=HEARTBEATS_STREAM,
            subjects=[f"{HEARTBEATS_PREFIX}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=HEARTBEAT_MAX_AGE_S,
            max_msgs_per_subject=3,
            allow_direct=True,
            discard=api.DiscardPolicy.OLD,
        ),
    ]


def logs_stream(domain: str) -> str:
    """The stream holding a domain's output (domain names are stream-name safe)."""
    return f"{LOGS_STREAM_PREFIX}{domain}"


def logs_stream_config(domain: str, domains: int, retention: Retention | None = None) -> api.StreamConfig:
    """`domains`: how many domains share the total bound now."""
    retention = retention or Retention()
    return api.StreamConfig(
        name=logs_stream(domain),
        subjects=[f"{LOGS_PREFIX}.{domain}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=retention.logs_max_age_s or None,
        max_bytes=retention.domain_logs_bytes(domains),
        allow_direct=True,
        discard=api.DiscardPolicy.OLD,
    )


def worker_consumer_name(domain: str, worker_id: str) -> str:
    """':' appears in neither domain names nor worker ids, so no two workers share a name."""
    return f"worker:{domain}:{worker_id}"


def worker_consumer(
    domain: str, worker_id: str, max_concurrency: int, start_seq: int | None = None
) -> api.ConsumerConfig:
    """A worker's own durable: exactly the dispatches addressed to it.

    A worker holding the service login creates it itself, from now on; for a worker that
    logs in with a domain token, `jobstream broker-auth` creates it from the worker's
    `registered` event, starting at that event so no dispatch after registration is missed.
    """
    return api.ConsumerConfig(
        durable_name=worker_consumer_name(domain, worker_id),
        filter_subject=dispatches_for(domain, worker_id),
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.NEW if start_seq is None else api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq,
        ack_wait=WORKER_ACK_WAIT_S,
        max_ack_pending=max(256, max_concurrency * 4),
        max_waiting=512,
        inactive_threshold=WORKER_CONSUMER_INACTIVE_S,
    )


async def provision(js: JetStreamContext, retention: Retention | None = None) -> None:
    """Create every stream and bucket, or update it to match; safe to call from every service."""
    for config in stream_configs(retention):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:
                # Another service created it between our look and our create.
                await js.update_stream(config)
        else:
            await js.update_stream(config)
    try:
        await js.key_value(LEASES_BUCKET)
    except NotFoundError:
        await js.create_key_value(config=api.KeyValueConfig(bucket=LEASES_BUCKET, ttl=LEASE_TTL_S, history=1))
    await _park_legacy_logs(js)


async def _park_legacy_logs(js: JetStreamContext) -> None:
    """The old all-domains LOGS stream stops capturing `log.>` (a domain's stream takes it) but
    keeps what it holds, read as before, until its age limit empties it; then it goes."""
    try:
        info = await js.stream_info(LEGACY_LOGS_STREAM)
    except NotFoundError:
        return
    if info.state.messages == 0:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(LEGACY_LOGS_STREAM)
        return
    if info.config.subjects != [LEGACY_LOGS_PARKED_SUBJECT]:
        await js.update_stream(dataclasses.replace(info.config, subjects=[LEGACY_LOGS_PARKED_SUBJECT]))


async def log_streams(js: JetStreamContext) -> dict[str, api.StreamInfo]:
    """Every domain's output stream, by name (the listing comes in pages)."""
    found: dict[str, api.StreamInfo] = {}
    offset = 0
    while page := await js.streams_info(offset):
        offset += len(page)
        for info in page:
            if info.config.name and info.config.name.startswith(LOGS_STREAM_PREFIX):
                found[info.config.name] = info
    return found


async def provision_logs(
    js: JetStreamContext, domains: Iterable[str], retention: Retention | None = None
) -> None:
    """Give each domain its output stream, then share the total bound among all domains' streams.

    Counting the streams that exist (not the caller's list) makes racing callers converge: the
    last to count has seen every stream created before it. Streams are never deleted here; a
    caller with a stale domain list cannot drop a new domain's output."""
    retention = retention or Retention()
    wanted = sorted(set(domains))
    existing = set(await log_streams(js))
    missing = [d for d in wanted if logs_stream(d) not in existing]
    if missing:
        await _park_legacy_logs(js)  # its `log.>` would overlap the new streams' subjects
    for domain in missing:
        config = logs_stream_config(domain, len(existing) + len(missing), retention)
        with contextlib.suppress(BadRequestError):  # made meanwhile elsewhere; its share is set below
            await js.add_stream(config)
    streams = await log_streams(js)
    if absent := [d for d in missing if logs_stream(d) not in streams]:
        raise RuntimeError(f"could not create the output stream of domain(s) {', '.join(absent)}")
    for name, info in streams.items():
        config = logs_stream_config(name.removeprefix(LOGS_STREAM_PREFIX), len(streams), retention)
        if (info.config.max_bytes, info.config.max_age or 0) != (config.max_bytes, config.max_age or 0):
            with contextlib.suppress(NotFoundError):  # deleted with its domain meanwhile
                await js.update_stream(config)


async def drop_logs(js: JetStreamContext, domain: str, retention: Retention | None = None) -> None:
    """A deleted domain's output goes with it, and its share returns to the others."""
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(logs_stream(domain))
    await provision_logs(js, [], retention)
