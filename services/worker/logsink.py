"""Streams an attempt's output to the LOGS stream in batches, back-pressured and capped.

One publish per line let a chatty job bury the worker's connection (issue 8). Lines are
now gathered into `LogBatch` messages (flushed at BATCH_MAX_LINES / BATCH_MAX_BYTES or
after LINGER_S), at most MAX_IN_FLIGHT batches await their ack: past that, `write` waits
for the oldest, which stalls the pipe-reading pump and so, through the OS pipe, the child.
A per-attempt rate cap (token bucket) and size cap drop what is over them and say so in
the log on stream "jobstream". `seq` stays the attempt-wide number of each stored line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from events import subjects
from events.codec import encode
from events.store import Appended, Publisher
from events.worker import LogBatch, LogLine

log = logging.getLogger(__name__)

MAX_LINE_CHARS = 16 * 1024
BATCH_MAX_LINES = 500
BATCH_MAX_BYTES = 64 * 1024
LINGER_S = 0.05  # how long a lone line may wait for company before it is sent
MAX_IN_FLIGHT = 4  # batches published but not yet acknowledged
ACK_TIMEOUT_S = 5.0  # a batch unacknowledged this long is counted lost, not waited on forever
FLUSH_TIMEOUT_S = 10.0
DROP_NOTE_EVERY_S = 1.0  # while dropping, how often the log says so
YIELD_EVERY_LINES = 1000  # lines handled from a full pipe buffer never suspend: let others run
LINE_OVERHEAD_BYTES = 48  # JSON keys, seq and time of one line in a batch

DEFAULT_OUTPUT_LINES_PER_S = 50_000.0  # sustained, per attempt
# Lines above the sustained rate allowed at once: a `seq 1 200000` is kept whole. Back-pressure,
# not this cap, is what protects the worker (bench/chatty: 240,000 lines/s stored, beats on time).
DEFAULT_OUTPUT_BURST_LINES = 250_000
DEFAULT_OUTPUT_MAX_BYTES = 100 * 1024 * 1024  # per attempt, line characters counted
DEFAULT_OUTPUT_MAX_LINES = 1_000_000  # per attempt


@dataclass(frozen=True)
class OutputLimits:
    """Caps on one attempt's stored output; lines over them are dropped, with a note."""

    lines_per_s: float = DEFAULT_OUTPUT_LINES_PER_S
    burst_lines: int = DEFAULT_OUTPUT_BURST_LINES
    max_bytes: int = DEFAULT_OUTPUT_MAX_BYTES
    max_lines: int = DEFAULT_OUTPUT_MAX_LINES


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale:,} {unit}"
    return f"{n:,} bytes"


class LogSink:
    def __init__(
        self,
        publisher: Publisher,
        domain: str,
        job_id: str,
        attempt: int,
        limits: OutputLimits = OutputLimits(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.subject = subjects.logs(domain, job_id, attempt)
        self.limits = limits
        self.clock = clock
        self.seq = 0  # lines stored (or being stored), markers included
        self.dropped = 0  # lines over a cap, never stored
        self.lost = 0  # lines whose publish failed or went unanswered
        self.capped = False  # the size cap is reached: the pump may discard without looking
        self._batch: list[LogLine] = []
        self._batch_bytes = 0
        self._in_flight: deque[tuple[asyncio.Future[Appended], int]] = deque()
        self._lock = asyncio.Lock()
        self._linger: asyncio.Task[None] | None = None
        self._lingering = False
        self._tokens = float(limits.burst_lines)
        self._refilled = clock()
        self._unnoted = 0  # dropped by the rate cap and not yet said in the log
        self._noted_at = 0.0
        self._kept_lines = 0
        self._kept_bytes = 0
        self._since_yield = 0

    async def write(self, stream: str, line: str) -> None:
        self._since_yield += 1
        if self._since_yield >= YIELD_EVERY_LINES:
            self._since_yield = 0
            await asyncio.sleep(0)
        if self.capped:
            self.dropped += 1
            return
        now = self.clock()
        if not self._take_token(now):
            self.dropped += 1
            self._unnoted += 1
            if now - self._noted_at >= DROP_NOTE_EVERY_S:
                await self._note_drops(now)
            return
        if self._unnoted:
            await self._note_drops(now)
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + " …[truncated]"
        size = len(line) + 1
        if self._kept_bytes + size > self.limits.max_bytes or self._kept_lines >= self.limits.max_lines:
            self.capped = True
            self.dropped += 1
            cap = (
                f"{self.limits.max_lines:,} lines"
                if self._kept_lines >= self.limits.max_lines
                else _size(self.limits.max_bytes)
            )
            await self._add(
                "jobstream",
                f"[jobstream: output cap of {cap} reached; the rest of this attempt's output is dropped]",
            )
            await self._send()
            return
        self._kept_bytes += size
        self._kept_lines += 1
        await self._add(stream, line)

    def _take_token(self, now: float) -> bool:
        self._tokens = min(
            float(self.limits.burst_lines), self._tokens + (now - self._refilled) * self.limits.lines_per_s
        )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def _note_drops(self, now: float) -> None:
        n, self._unnoted = self._unnoted, 0
        self._noted_at = now
        if n:
            rate = f"{self.limits.lines_per_s:,.0f}"
            await self._add("jobstream", f"[jobstream: {n:,} lines dropped: output over {rate} lines/s]")

    async def _add(self, stream: str, line: str) -> None:
        self.seq += 1
        self._batch.append(LogLine(self.seq, stream, line))
        self._batch_bytes += len(line) + LINE_OVERHEAD_BYTES
        if len(self._batch) >= BATCH_MAX_LINES or self._batch_bytes >= BATCH_MAX_BYTES:
            await self._send()
        elif self._linger is None:
            self._linger = asyncio.create_task(self._linger_then_send())

    async def _linger_then_send(self) -> None:
        self._lingering = True
        try:
            await asyncio.sleep(LINGER_S)
        finally:
            self._lingering = False
        self._linger = None
        await self._send()

    async def _send(self) -> None:
        """Publish the batch in hand; with MAX_IN_FLIGHT unanswered, first wait for the oldest.
        Under the lock, so batches go out in order whoever sends them."""
        async with self._lock:
            if not self._batch:
                return
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            while len(self._in_flight) >= MAX_IN_FLIGHT:
                await self._settle_oldest(ACK_TIMEOUT_S)
            try:
                fut = await self.publisher.publish(self.subject, encode(LogBatch(batch)))
            except Exception as exc:
                self._lose(len(batch), exc)
                return
            self._in_flight.append((fut, len(batch)))
        await asyncio.sleep(0)  # one batch per turn: heartbeats and others run in between

    async def _settle_oldest(self, timeout: float) -> None:
        fut, n = self._in_flight.popleft()
        try:
            await asyncio.wait_for(fut, max(timeout, 0.0))
        except TimeoutError as exc:
            self.publisher.abandon(fut)
            self._lose(n, exc)
        except Exception as exc:
            self._lose(n, exc)

    def _lose(self, n: int, exc: BaseException) -> None:
        if not self.lost:
            log.warning(
                "%s: output not stored (%s); counting lost lines", self.subject, exc or type(exc).__name__
            )
        self.lost += n

    async def flush(self) -> None:
        """Wait until every line is stored (or counted lost), so logs are readable before the
        outcome is."""
        if self._linger is not None and self._lingering:
            self._linger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._linger
            self._linger = None
        if self._unnoted:
            await self._note_drops(self.clock())
        await self._send()
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        async with self._lock:
            while self._in_flight:
                await self._settle_oldest(deadline - time.monotonic())
        if self.lost:
            log.warning("%s: %d of %d log lines were not stored", self.subject, self.lost, self.seq)
