"""A leader lease in a NATS KV bucket whose TTL expires a holder that stops renewing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events.ids import new_id
from events.streams import LEASE_TTL_S, LEASES_BUCKET

log = logging.getLogger(__name__)

# Renew often enough that two missed renewals still leave the lease ours.
RENEW_INTERVAL_S = LEASE_TTL_S / 5


class Lease:
    """Holders compete with create-if-absent and renew with compare-and-set on the revision."""

    def __init__(self, js: JetStreamContext, key: str, holder: str | None = None) -> None:
        self.js = js
        self.key = key
        self.holder = holder or new_id()
        self.revision: int | None = None
        self.renewed_at = 0.0
        self._kv: KeyValue | None = None

    @property
    def held(self) -> bool:
        """Ours only while the last renewal is younger than the TTL: a partitioned leader stops."""
        return self.revision is not None and time.monotonic() - self.renewed_at < LEASE_TTL_S

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(LEASES_BUCKET)
        return self._kv

    async def tick(self) -> bool:
        """Acquire or renew; returns whether we hold the lease now."""
        sent = time.monotonic()  # the server's TTL runs from when it got the request, not our reply
        try:
            kv = await self._bucket()
            if self.revision is None:
                self.revision = await kv.create(self.key, self.holder.encode())
                log.info("lease %s acquired by %s", self.key, self.holder)
            else:
                self.revision = await kv.update(self.key, self.holder.encode(), last=self.revision)
            self.renewed_at = sent
        except KeyWrongLastSequenceError:
            if self.revision is not None:
                log.warning("lease %s lost by %s", self.key, self.holder)
            self.revision = None
        except Exception as exc:
            log.warning("lease %s: %s", self.key, exc)
        return self.held

    async def keep(self, stop: asyncio.Event, on_acquired: Callable[[], None]) -> None:
        """Renew until `stop`; call `on_acquired` each time the lease becomes ours."""
        while not stop.is_set():
            was = self.held
            if await self.tick() and not was:
                log.info("%s is leader", self.key)
                on_acquired()
            await asyncio.sleep(RENEW_INTERVAL_S)

    @contextlib.asynccontextmanager
    async def kept(self, stop: asyncio.Event, on_acquired: Callable[[], None]) -> AsyncIterator[None]:
        """Keep the lease (see `keep`) for the body's duration, then stop renewing and release it."""
        leasing = asyncio.create_task(self.keep(stop, on_acquired))
        try:
            yield
        finally:
            leasing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leasing
            await self.release()

    async def release(self) -> None:
        if self.revision is None:
            return
        with contextlib.suppress(Exception):
            kv = await self._bucket()
            await kv.delete(self.key, last=self.revision)
        self.revision = None
