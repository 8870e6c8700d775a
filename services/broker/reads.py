"""The read proxy: one aggregate's events for logins that may not use JetStream direct gets.

A direct get names its subject in the request body, where the broker cannot check it, so
domain tokens are not given it. They ask on `rd.<domain>.<aggregate>.<id>` instead, which
their broker permissions limit to their own domain, and this answers from the log.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events.codec import aggregates
from events.store import EventStore, read_error, read_page
from events.subjects import READS_PREFIX, SubjectError, read_filter

log = logging.getLogger(__name__)
QUEUE = "jobstream-reads"


async def serve_reads(nc: NATS, store: EventStore) -> Subscription:
    async def on_request(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            filter_subject = read_filter(msg.subject)
            aggregate = msg.subject.split(".")[2]
            if aggregate not in aggregates():
                raise SubjectError(f"unknown aggregate {aggregate!r}")
            after = int(msg.data or b"0")
            if after < 0:
                raise ValueError("negative sequence")
        except (SubjectError, ValueError) as exc:
            await msg.respond(read_error(f"bad read request on {msg.subject}: {exc}"))
            return
        try:
            await msg.respond(read_page(await store.read_raw(filter_subject, after)))
        except Exception as exc:
            log.warning("read of %s failed: %s", filter_subject, exc)
            await msg.respond(read_error(f"read failed: {type(exc).__name__}"))

    return await nc.subscribe(f"{READS_PREFIX}.*.*.*", queue=QUEUE, cb=on_request)
