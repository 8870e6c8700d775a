"""LogSink's batching, back-pressure and caps, against a publisher that holds acks in hand."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from events.codec import decode_log
from events.store import Appended, Publisher
from events.worker import LogLine
from services.worker import logsink
from services.worker.logsink import BATCH_MAX_LINES, MAX_IN_FLIGHT, LogSink, OutputLimits


class HeldPublisher:
    """Records each publish; acks only when told to (or at once with `auto`)."""

    def __init__(self, auto: bool = True, fail: bool = False) -> None:
        self.auto = auto
        self.fail = fail
        self.sent: list[list[LogLine]] = []
        self.futures: list[asyncio.Future[Appended]] = []
        self.abandoned = 0

    async def publish(self, subject: str, payload: bytes, headers: Any = None) -> asyncio.Future[Appended]:
        self.sent.append(decode_log(payload))
        fut: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(RuntimeError("no stream"))
        elif self.auto:
            fut.set_result(Appended(len(self.sent), False))
        self.futures.append(fut)
        return fut

    def abandon(self, fut: asyncio.Future[Appended]) -> None:
        self.abandoned += 1

    def ack_all(self) -> None:
        for fut in self.futures:
            if not fut.done():
                fut.set_result(Appended(0, False))

    @property
    def lines(self) -> list[LogLine]:
        return [line for batch in self.sent for line in batch]


def sink(pub: HeldPublisher, limits: OutputLimits = OutputLimits(), clock: Any = None) -> LogSink:
    kw: dict[str, Any] = {"clock": clock} if clock else {}
    return LogSink(cast(Publisher, pub), "blue", "j1", 1, limits, **kw)


async def test_lines_go_out_in_batches_with_attempt_wide_seq() -> None:
    pub = HeldPublisher()
    s = sink(pub)
    for i in range(BATCH_MAX_LINES * 2 + 7):
        await s.write("stdout" if i % 2 else "stderr", f"line {i}")
    await s.flush()
    assert len(pub.sent) == 3 and len(pub.sent[0]) == BATCH_MAX_LINES
    assert [line.seq for line in pub.lines] == list(range(1, BATCH_MAX_LINES * 2 + 8))
    assert pub.lines[3].line == "line 3" and pub.lines[3].stream == "stdout"


async def test_a_lone_line_goes_out_after_the_linger() -> None:
    pub = HeldPublisher()
    s = sink(pub)
    await s.write("stdout", "hello")
    assert pub.sent == []
    await asyncio.sleep(logsink.LINGER_S * 3)
    assert [line.line for line in pub.lines] == ["hello"]
    await s.flush()
    assert len(pub.sent) == 1


async def test_write_waits_for_the_oldest_ack_once_the_bound_is_reached() -> None:
    pub = HeldPublisher(auto=False)
    s = sink(pub)

    async def chatty() -> None:
        for i in range(BATCH_MAX_LINES * (MAX_IN_FLIGHT + 2)):
            await s.write("stdout", f"{i}")

    task = asyncio.create_task(chatty())
    await asyncio.sleep(0.1)
    assert not task.done(), "a sink with every batch unanswered kept accepting lines"
    assert len(pub.sent) == MAX_IN_FLIGHT
    pub.ack_all()
    await asyncio.sleep(0.1)
    pub.ack_all()
    await asyncio.wait_for(task, 2)
    pub.ack_all()
    await s.flush()
    assert s.lost == 0 and len(pub.lines) == BATCH_MAX_LINES * (MAX_IN_FLIGHT + 2)


async def test_failed_publishes_are_counted_not_waited_on() -> None:
    pub = HeldPublisher(fail=True)
    s = sink(pub)
    for i in range(BATCH_MAX_LINES + 1):
        await s.write("stdout", f"{i}")
    await asyncio.wait_for(s.flush(), 2)
    assert s.lost == BATCH_MAX_LINES + 1


async def test_unanswered_publishes_time_out_at_flush(monkeypatch: Any) -> None:
    monkeypatch.setattr(logsink, "FLUSH_TIMEOUT_S", 0.2)
    pub = HeldPublisher(auto=False)
    s = sink(pub)
    await s.write("stdout", "x")
    await asyncio.wait_for(s.flush(), 2)
    assert s.lost == 1 and pub.abandoned == 1


async def test_lines_over_the_rate_are_dropped_and_said_so() -> None:
    now = [0.0]
    pub = HeldPublisher()
    s = sink(pub, OutputLimits(lines_per_s=100, burst_lines=10), clock=lambda: now[0])
    for i in range(1000):
        await s.write("stdout", f"{i}")
    now[0] += 0.5  # refills 50 lines
    await s.write("stdout", "after the pause")
    await s.flush()
    texts = [line.line for line in pub.lines]
    assert texts[:10] == [str(i) for i in range(10)]
    assert "[jobstream: 990 lines dropped: output over 100 lines/s]" in texts
    assert texts[-1] == "after the pause"
    marker = next(line for line in pub.lines if "dropped" in line.line)
    assert marker.stream == "jobstream"
    assert s.dropped == 990


async def test_the_size_cap_drops_the_rest_once_with_one_note() -> None:
    pub = HeldPublisher()
    s = sink(pub, OutputLimits(max_lines=5))
    for i in range(20):
        await s.write("stdout", f"{i}")
    await s.flush()
    texts = [line.line for line in pub.lines]
    assert texts[:5] == ["0", "1", "2", "3", "4"]
    assert texts[5:] == [
        "[jobstream: output cap of 5 lines reached; the rest of this attempt's output is dropped]"
    ]
    assert s.capped and s.dropped == 15


async def test_the_byte_cap_names_its_unit() -> None:
    pub = HeldPublisher()
    s = sink(pub, OutputLimits(max_bytes=1024))
    for _ in range(10):
        await s.write("stdout", "x" * 200)
    await s.flush()
    assert "output cap of 1 KiB reached" in pub.lines[-1].line
    assert len(pub.lines) == 6  # 5 lines of 201 bytes fit in 1 KiB


def test_caps_and_the_logs_bound_come_from_the_environment(monkeypatch: Any) -> None:
    from events.streams import (
        DEFAULT_LOGS_DOMAIN_MAX_BYTES,
        DEFAULT_LOGS_MAX_BYTES,
        Retention,
        logs_stream_config,
    )
    from services.worker.settings import from_env

    monkeypatch.setenv("WORKER_OUTPUT_LINES_PER_S", "250")
    monkeypatch.setenv("WORKER_OUTPUT_MAX_BYTES", "1_048_576")
    limits = from_env(worker_id="w1").output_limits
    assert limits.lines_per_s == 250 and limits.max_bytes == 1 << 20
    assert limits.max_lines == logsink.DEFAULT_OUTPUT_MAX_LINES

    assert Retention().logs_max_bytes == DEFAULT_LOGS_MAX_BYTES == 8 << 30
    assert Retention().logs_domain_max_bytes == DEFAULT_LOGS_DOMAIN_MAX_BYTES == 2 << 30
    monkeypatch.setenv("JOBSTREAM_LOGS_MAX_BYTES", "1000000")
    monkeypatch.setenv("JOBSTREAM_LOGS_DOMAIN_MAX_BYTES", "600_000")
    assert logs_stream_config("prod", 1).max_bytes == 600_000  # the domain's own bound
    assert logs_stream_config("prod", 4).max_bytes == 250_000  # an equal share of the total
    monkeypatch.setenv("JOBSTREAM_LOGS_MAX_BYTES", "-1")
    assert logs_stream_config("prod", 1000).max_bytes == 600_000
    monkeypatch.setenv("JOBSTREAM_LOGS_DOMAIN_MAX_BYTES", "-1")
    assert logs_stream_config("prod", 1000).max_bytes == -1
    monkeypatch.setenv("JOBSTREAM_LOGS_DOMAIN_MAX_BYTES", "0")
    with pytest.raises(ValueError, match="JOBSTREAM_LOGS_DOMAIN_MAX_BYTES must be positive"):
        logs_stream_config("prod", 1)
