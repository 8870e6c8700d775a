"""Stream, consumer and bucket definitions, declared once and provisioned idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

from events.subjects import EVENTS_PREFIX, HEARTBEATS_PREFIX, LOGS_PREFIX, dispatches_for

EVENTS_STREAM = "EVENTS"
HEARTBEATS_STREAM = "HEARTBEATS"
# Output lives in one stream per domain, so each domain's output has its own byte bound.
# "LOGS" (all domains, `log.>`) is where output was kept before; still read, no longer written.
LEGACY_LOGS_STREAM = "LOGS"
LOGS_STREAM_PREFIX = "LOGS_"
LEGACY_LOGS_PARKED_SUBJECT = "jobstream.legacy-logs"  # nothing publishes here
LEASES_BUCKET = "jobstream_leases"
LEASES_KV_STREAM = f"KV_{LEASES_BUCKET}"  # the stream behind the bucket

DUPLICATE_WINDOW_S = 120.0
HEARTBEAT_MAX_AGE_S = 600.0
DEFAULT_LOGS_MAX_AGE_S = 7 * 24 * 3600.0
# Output is bounded by default (oldest discarded first): one chatty job must not fill the
# server's disk, and one chatty domain must not push the others' output out.
DEFAULT_LOGS_MAX_BYTES = 8 * 1024**3
DEFAULT_LOGS_DOMAIN_MAX_BYTES = 2 * 1024**3
LOGS_MAX_BYTES_ENV = "JOBSTREAM_LOGS_MAX_BYTES"
LOGS_DOMAIN_MAX_BYTES_ENV = "JOBSTREAM_LOGS_DOMAIN_MAX_BYTES"
REPLICAS_ENV = "JOBSTREAM_REPLICAS"
MAX_REPLICAS = 5  # what JetStream allows

log = logging.getLogger(__name__)


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


def replicas_from_env() -> int:
    """JOBSTREAM_REPLICAS: how many copies new streams and the lease bucket get (default 1)."""
    value = os.environ.get(REPLICAS_ENV, "").strip()
    if not value:
        return 1
    try:
        parsed = int(value)
    except ValueError as exc:
        raise ValueError(
            f"{REPLICAS_ENV} must be a whole number from 1 to {MAX_REPLICAS}, got {value!r}"
        ) from exc
    if not 1 <= parsed <= MAX_REPLICAS:
        raise ValueError(f"{REPLICAS_ENV} must be from 1 to {MAX_REPLICAS}, got {parsed}")
    return parsed


# A leader (dispatcher, scheduler) keeps its lease this long without a renewal. Longer than
# the worst KV leader election (about 10 s), so an election does not move leadership; this is
# also how long a crashed leader's standby waits. Fencing keeps a lapse safe either way.
LEASE_TTL_S = 12.0
# How long a service waits at start for JetStream (a cluster electing its first leaders).
PROVISION_DEADLINE_S = 60.0
MAX_EVENT_BYTES = 1024 * 1024
WORKER_CONSUMER_INACTIVE_S = 24 * 3600.0
WORKER_ACK_WAIT_S = 30.0
# Ordered consumers that follow the log (projector, scheduler, dispatcher, broker-auth) are
# rebuilt by nats-py after two missed idle heartbeats: with its 5 s default a restarted or
# failed-over server left a follower on a stale view for 18 s. 1 s makes that about 2-3 s.
FOLLOW_IDLE_HEARTBEAT_S = 1.0


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


# What provisioning declares for a stream, with the value the server reports for "not set";
# anything else on an existing stream (replicas, placement, an operator's description) is kept.
MANAGED_STREAM_FIELDS: dict[str, object] = {
    "subjects": None,
    "retention": None,
    "storage": None,
    "max_age": 0.0,
    "max_bytes": -1,
    "max_msg_size": -1,
    "max_msgs_per_subject": -1,
    "duplicate_window": DUPLICATE_WINDOW_S,
    "allow_direct": False,
    "discard": api.DiscardPolicy.OLD,
}


def _declared(config: api.StreamConfig, name: str) -> object:
    """A setting as the server applies it (a duplicate window of 0 means its default)."""
    value = getattr(config, name)
    if value is None or (name == "duplicate_window" and not value):
        return MANAGED_STREAM_FIELDS[name]
    return value


def kept_replicas(current: int | None, wanted: int, stream: str = "") -> int:
    """Replicas are only ever raised by provisioning: every service start calls it, and one
    started with a lower (or the default) setting must not undo an operator's R3. Lowering is
    `jobstream streams replicas N`."""
    current = current or 1
    if wanted < current:
        log.warning(
            "stream %s has %d replicas, more than the %d asked for (%s); keeping %d. To lower them: "
            "`jobstream streams replicas %d --yes`, and set %s=%d for every service",
            stream, current, wanted, REPLICAS_ENV, current, wanted, REPLICAS_ENV, wanted,
        )  # fmt: skip
    return max(current, wanted)


def stream_update(existing: api.StreamConfig, wanted: api.StreamConfig) -> api.StreamConfig | None:
    """The config to send for an existing stream: it as the server has it, with the settings
    jobstream declares taken from `wanted` and its replicas never lowered; None when that is
    what the server has already (nothing to update)."""
    replicas = kept_replicas(existing.num_replicas, wanted.num_replicas or 1, existing.name or "")
    changes = {
        name: getattr(wanted, name)
        for name in MANAGED_STREAM_FIELDS
        if _declared(existing, name) != _declared(wanted, name)
    }
    if not changes and replicas == (existing.num_replicas or 1):
        return None
    return dataclasses.replace(existing, **changes, num_replicas=replicas)


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    """Create the stream, or bring an existing one to `config` by `stream_update`'s rule."""
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:
            info = await js.stream_info(config.name)  # another service created it meanwhile
    update = stream_update(info.config, config)
    if update is not None:
        await js.update_stream(update)


def not_ready_yet(exc: BaseException) -> bool:
    """JetStream that is starting, electing or has not met its peers yet: try again soon.
    (A cluster refuses replicated streams as "insufficient resources", 10023, until then.)"""
    if isinstance(exc, TimeoutError | NatsTimeoutError | NoRespondersError | ServiceUnavailableError):
        return True  # (nats-py raises a bare 503 as ServiceUnavailableError, with no code)
    return isinstance(exc, APIError) and (exc.code == 503 or exc.err_code in (10008, 10023))


async def provision(
    js: JetStreamContext,
    retention: Retention | None = None,
    replicas: int | None = None,
    deadline_s: float = PROVISION_DEADLINE_S,
) -> None:
    """Create every stream and bucket, or update it to match; safe to call from every service.
    `replicas` (default JOBSTREAM_REPLICAS) applies to new streams and raises existing ones.
    A service starting with (or just after) its servers waits for JetStream up to `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    delay = 0.2
    while True:
        try:
            return await _provision(js, retention, replicas)
        except Exception as exc:
            if not not_ready_yet(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("JetStream is not ready (%r); provisioning again in %.1fs", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def _provision(js: JetStreamContext, retention: Retention | None, replicas: int | None) -> None:
    replicas = replicas or replicas_from_env()
    for config in stream_configs(retention):
        await _ensure_stream(js, dataclasses.replace(config, num_replicas=replicas))
    try:
        await js.key_value(LEASES_BUCKET)
    except NotFoundError:
        await js.create_key_value(
            config=api.KeyValueConfig(bucket=LEASES_BUCKET, ttl=LEASE_TTL_S, history=1, replicas=replicas)
        )
    else:
        info = await js.stream_info(LEASES_KV_STREAM)
        keep = kept_replicas(info.config.num_replicas, replicas, LEASES_KV_STREAM)
        if (keep, info.config.max_age) != (info.config.num_replicas or 1, LEASE_TTL_S):
            # The bucket's TTL is its stream's max age: a bucket made with another TTL gets ours.
            await js.update_stream(dataclasses.replace(info.config, num_replicas=keep, max_age=LEASE_TTL_S))
    await _park_legacy_logs(js)


async def jobstream_streams(js: JetStreamContext) -> list[api.StreamInfo]:
    """Every stream jobstream keeps: the log, heartbeats, output (per domain and legacy), leases."""
    outputs = sorted(await log_streams(js))
    found: list[api.StreamInfo] = []
    for name in (EVENTS_STREAM, HEARTBEATS_STREAM, *outputs, LEGACY_LOGS_STREAM, LEASES_KV_STREAM):
        with contextlib.suppress(NotFoundError):
            found.append(await js.stream_info(name))
    return found


async def set_replicas(js: JetStreamContext, replicas: int, streams: list[api.StreamInfo]) -> None:
    """The explicit way to change replicas, lowering included (provisioning only raises them)."""
    for info in streams:
        if (info.config.num_replicas or 1) != replicas:
            await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))


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
    js: JetStreamContext,
    domains: Iterable[str],
    retention: Retention | None = None,
    replicas: int | None = None,
) -> None:
    """Give each domain its output stream, then share the total bound among all domains' streams.

    Counting the streams that exist (not the caller's list) makes racing callers converge: the
    last to count has seen every stream created before it. Streams are never deleted here; a
    caller with a stale domain list cannot drop a new domain's output."""
    retention = retention or Retention()
    replicas = replicas or replicas_from_env()
    wanted = sorted(set(domains))
    existing = set(await log_streams(js))
    missing = [d for d in wanted if logs_stream(d) not in existing]
    if missing:
        await _park_legacy_logs(js)  # its `log.>` would overlap the new streams' subjects
    for domain in missing:
        config = logs_stream_config(domain, len(existing) + len(missing), retention)
        config = dataclasses.replace(config, num_replicas=replicas)
        with contextlib.suppress(BadRequestError):  # made meanwhile elsewhere; its share is set below
            await js.add_stream(config)
    streams = await log_streams(js)
    if absent := [d for d in missing if logs_stream(d) not in streams]:
        raise RuntimeError(f"could not create the output stream of domain(s) {', '.join(absent)}")
    for name, info in streams.items():
        config = logs_stream_config(name.removeprefix(LOGS_STREAM_PREFIX), len(streams), retention)
        update = stream_update(info.config, dataclasses.replace(config, num_replicas=replicas))
        if update is not None:
            with contextlib.suppress(NotFoundError):  # deleted with its domain meanwhile
                await js.update_stream(update)


async def drop_logs(js: JetStreamContext, domain: str, retention: Retention | None = None) -> None:
    """A deleted domain's output goes with it, and its share returns to the others."""
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(logs_stream(domain))
    await provision_logs(js, [], retention)
