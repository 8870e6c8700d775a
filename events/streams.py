"""Stream, consumer and bucket definitions, declared once and provisioned idempotently."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from events.subjects import EVENTS_PREFIX, HEARTBEATS_PREFIX, LOGS_PREFIX, dispatches_for

EVENTS_STREAM = "EVENTS"
HEARTBEATS_STREAM = "HEARTBEATS"
LOGS_STREAM = "LOGS"
LEASES_BUCKET = "jobstream_leases"

DUPLICATE_WINDOW_S = 120.0
HEARTBEAT_MAX_AGE_S = 600.0
DEFAULT_LOGS_MAX_AGE_S = 7 * 24 * 3600.0
# Output is bounded by default (oldest discarded first): one chatty job must not fill the
# server's disk. One bound for all domains; a per-domain bound would need a stream per domain.
DEFAULT_LOGS_MAX_BYTES = 8 * 1024**3
LOGS_MAX_BYTES_ENV = "JOBSTREAM_LOGS_MAX_BYTES"


def logs_max_bytes_from_env() -> int:
    """JOBSTREAM_LOGS_MAX_BYTES (bytes; -1: unbounded), else DEFAULT_LOGS_MAX_BYTES."""
    value = os.environ.get(LOGS_MAX_BYTES_ENV, "").strip().replace("_", "")
    if not value:
        return DEFAULT_LOGS_MAX_BYTES
    try:
        parsed = int(value)
    except ValueError as exc:
        raise ValueError(f"{LOGS_MAX_BYTES_ENV} must be a whole number of bytes, got {value!r}") from exc
    if parsed == 0 or parsed < -1:
        raise ValueError(f"{LOGS_MAX_BYTES_ENV} must be positive (or -1 for unbounded), got {parsed}")
    return parsed


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
        api.StreamConfig(
            name=LOGS_STREAM,
            subjects=[f"{LOGS_PREFIX}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=retention.logs_max_age_s or None,
            max_bytes=retention.logs_max_bytes,
            allow_direct=True,
            discard=api.DiscardPolicy.OLD,
        ),
    ]


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
