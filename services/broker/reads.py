"""The read proxy: one aggregate's events for logins that may not use JetStream direct gets.

A direct get names its subject in the request body, where the broker cannot check it, so
domain tokens are not given it. They ask on `rd.<domain>.<aggregate>.<id>` instead, which
their broker permissions limit to their own domain, and this answers from the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

import events.store as event_store
from events.codec import aggregates
from events.ids import is_token
from events.store import EventStore, read_error, read_page
from events.subjects import READS_PREFIX, SubjectError, read_filter
from services.broker.bounds import PerDomain

log = logging.getLogger(__name__)
QUEUE = "jobstream-reads"
READS_AT_ONCE_PER_DOMAIN = 4
READS_QUEUED_PER_DOMAIN = 64


async def serve_reads(nc: NATS, store: EventStore) -> Subscription:
    """Each request answers at most one page; a domain gets a few reads at a time and a bounded
    queue, so one domain's flood of requests cannot starve another's."""
    running: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(READS_AT_ONCE_PER_DOMAIN))
    queued = PerDomain(READS_QUEUED_PER_DOMAIN)

    async def answer(msg: Msg, domain: str, filter_subject: str, after: int) -> None:
        try:
            async with running[domain]:
                page, more = await store.read_raw_page(filter_subject, after, event_store.READ_PAGE_BYTES)
            await msg.respond(read_page(page, more))
        except Exception as exc:
            log.warning("read of %s failed: %s", filter_subject, exc)
            await msg.respond(read_error(f"read failed: {type(exc).__name__}"))

    async def on_request(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            filter_subject = read_filter(msg.subject)
            domain, aggregate, aggregate_id = msg.subject.split(".")[1:4]
            if aggregate not in aggregates():
                raise SubjectError(f"unknown aggregate {aggregate!r}")
            if not is_token(aggregate_id):  # a literal '*' passes permissions; it means "all"
                raise SubjectError(f"{aggregate_id!r} is not an id")
            after = int(msg.data or b"0")
            if after < 0:
                raise ValueError("negative sequence")
        except (SubjectError, ValueError) as exc:
            await msg.respond(read_error(f"bad read request on {msg.subject}: {exc}"))
            return
        if not queued.start(domain, lambda: answer(msg, domain, filter_subject, after)):
            await msg.respond(read_error(f"too many reads in flight for domain {domain}; retry"))

    return await nc.subscribe(f"{READS_PREFIX}.*.*.*", queue=QUEUE, cb=on_request)
