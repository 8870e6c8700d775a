"""Runs one child process in its own process group: streams its lines, enforces timeout and cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

from services.worker.completion import StdoutWatch
from services.worker.groups import GroupLedger
from services.worker.logsink import LogSink

STREAM_LIMIT_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024
# Between SIGTERM and SIGKILL: long enough for a clean exit, short enough that a
# cancelled job is gone well within two seconds.
KILL_GRACE_S = 1.0
DRAIN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    duration_s: float
    timed_out: bool = False
    cancelled: bool = False


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after the grace period."""
    pgid = proc.pid  # start_new_session makes the child a group leader
    if not _signal_group(pgid, signal.SIGTERM):
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    _signal_group(pgid, signal.SIGKILL)


async def _pump(stream: asyncio.StreamReader, name: str, sink: LogSink, watch: StdoutWatch) -> None:
    """Read until EOF whatever happens: a sink that blocks back-pressures the child through
    the pipe, and once the sink is capped the rest is read and discarded in chunks, so a
    capped child never blocks on a full pipe."""
    while True:
        if sink.capped:
            if not await stream.read(READ_CHUNK_BYTES):
                return
            continue
        try:
            raw = await stream.readline()
        except ValueError:
            await sink.write(name, f"[a line over {STREAM_LIMIT_BYTES} bytes was dropped]")
            continue
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if name == "stdout":
            watch.feed(line)
        await sink.write(name, line)


async def run_process(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str | None,
    timeout_s: float | None,
    cancel: asyncio.Event,
    sink: LogSink,
    watch: StdoutWatch,
    groups: GroupLedger | None = None,
) -> ProcessResult:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        limit=STREAM_LIMIT_BYTES,
    )
    assert proc.stdout is not None and proc.stderr is not None
    if groups is not None:
        groups.started(proc.pid)
    pumps = [
        asyncio.create_task(_pump(proc.stdout, "stdout", sink, watch)),
        asyncio.create_task(_pump(proc.stderr, "stderr", sink, watch)),
    ]
    waiter = asyncio.create_task(proc.wait())
    cancelled = asyncio.create_task(cancel.wait())
    timed_out = was_cancelled = False
    try:
        done, _ = await asyncio.wait(
            {waiter, cancelled}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            was_cancelled = cancelled in done
            timed_out = not was_cancelled
            await kill_group(proc)
        # Children the job left behind would hold the pipes open forever.
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
    finally:
        cancelled.cancel()
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGKILL)
        if groups is not None:
            groups.ended(proc.pid)
    _, pending = await asyncio.wait(pumps, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    return ProcessResult(
        exit_code=proc.returncode,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=was_cancelled,
    )
