"""Streams an attempt's output lines to the LOGS stream, pipelined, with a sequence number."""

from __future__ import annotations

import asyncio
import logging

from events import subjects
from events.codec import encode
from events.store import Appended, Publisher
from events.worker import LogLine

log = logging.getLogger(__name__)

MAX_LINE_CHARS = 16 * 1024
FLUSH_TIMEOUT_S = 10.0


class LogSink:
    def __init__(self, publisher: Publisher, domain: str, job_id: str, attempt: int) -> None:
        self.publisher = publisher
        self.subject = subjects.logs(domain, job_id, attempt)
        self.seq = 0
        self._acks: list[asyncio.Future[Appended]] = []

    async def write(self, stream: str, line: str) -> None:
        self.seq += 1
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + " …[truncated]"
        self._acks.append(await self.publisher.publish(self.subject, encode(LogLine(self.seq, stream, line))))

    async def flush(self) -> None:
        """Wait until every line is stored, so logs are readable before the outcome is."""
        if not self._acks:
            return
        acks, self._acks = self._acks, []
        done, pending = await asyncio.wait(acks, timeout=FLUSH_TIMEOUT_S)
        for fut in pending:
            self.publisher.abandon(fut)
            fut.cancel()
        failed = sum(1 for fut in done if fut.exception() is not None) + len(pending)
        if failed:
            log.warning("%s: %d of %d log lines were not stored", self.subject, failed, len(acks))
