"""Keeps exactly `free slots` worth of pull requests open, and hands over each message on arrival.

nats-py's `fetch(n)` waits for all n messages or its timeout, which would hold a
lone assignment back for the whole timeout; this is the "consume" pattern instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

PULL_EXPIRES_S = 5.0
WARN_EVERY_S = 10.0
LOST_AFTER_S = 1.0
PENDING_HEADER = "Nats-Pending-Messages"


class Puller:
    def __init__(
        self, nc: NATS, stream: str, consumer: str, on_msg: Callable[[Msg], Awaitable[None]]
    ) -> None:
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.on_msg = on_msg
        self.inbox = nc.new_inbox()
        self.credits = 0
        self._sub: Subscription | None = None
        self._warned = -WARN_EVERY_S
        self._asked_at = 0.0
        self._answered = asyncio.Event()

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.inbox, cb=self._on_reply)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        self.credits = 0

    async def probe(self, timeout: float) -> bool:
        """One `no_wait` pull: True once the server answers it (a delivery or "no messages").

        A pull the broker refuses gets no answer at all, so this is how a worker with a
        domain token learns that broker-auth has granted it its consumer.
        """
        if self._sub is None:
            return False
        self._answered.clear()
        self.credits += 1
        self._asked_at = time.monotonic()
        request = {"batch": 1, "no_wait": True}
        await self.nc.publish(self.next_subject, json.dumps(request).encode(), reply=self.inbox)
        try:
            await asyncio.wait_for(self._answered.wait(), timeout)
        except TimeoutError:
            self.credits = max(0, self.credits - 1)
            return False
        return True

    def reset(self) -> None:
        """After a reconnect the server has forgotten our open requests."""
        self.credits = 0

    async def want(self, free: int) -> None:
        """Top open requests up to `free` messages."""
        now = time.monotonic()
        if self.credits and now - self._asked_at > PULL_EXPIRES_S + LOST_AFTER_S:
            # Every request ends with a status by its expiry; silence means it never arrived
            # (refused by the broker's permissions before broker-auth granted them, for one).
            self.credits = 0
        missing = free - self.credits
        if missing <= 0 or self._sub is None:
            return
        self.credits += missing
        self._asked_at = now
        request = {"batch": missing, "expires": int(PULL_EXPIRES_S * 1e9)}
        await self.nc.publish(self.next_subject, json.dumps(request).encode(), reply=self.inbox)

    async def _on_reply(self, msg: Msg) -> None:
        self._answered.set()
        status = msg.headers.get("Status") if msg.headers else None
        if status is None and msg.reply:
            self.credits = max(0, self.credits - 1)
            await self.on_msg(msg)
            return
        if status == "100":
            return  # idle heartbeat
        if status == "503":
            # No consumer answers (yet): a token's worker waits for broker-auth to grant it one.
            self.credits = 0
            now = time.monotonic()
            if now - self._warned > WARN_EVERY_S:
                self._warned = now
                log.warning("no consumer answers %s yet; retrying", self.next_subject)
            return
        # 404/408/409: a request ended; what it did not deliver is no longer owed to us.
        assert msg.headers is not None
        pending = msg.headers.get(PENDING_HEADER)
        if pending is not None:
            self.credits = max(0, self.credits - int(pending))
        elif status in ("404", "408"):
            self.credits = 0
        if status == "409":
            log.warning("pull request ended: %s", msg.headers.get("Description", status))
