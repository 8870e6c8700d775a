"""Scheduler benchmark: many schedules firing every second, and a large catch-up.

Runs its own nats-server on a free loopback port and one `jobstream scheduler` process
(no dispatcher or workers: the fired jobs stay pending; what is measured is firing).
Schedules are created by appending their `created` events straight to the log, so set-up
takes seconds, not minutes of API calls.

- Steady: N schedules with cron `* * * * * *` (every second, all on the same second) for
  D seconds. Fire lateness per tick = when its `fired` record was written minus the
  tick's planned time (tick + jitter; no jitter here), read from the records themselves.
  Also the scheduler's CPU (user+system seconds per wall second) and peak RSS from /proc.
- Catch-up: S schedules every `interval` seconds, created while no scheduler runs; after
  a downtime the scheduler starts and fires every missed tick (policy fire_immediately).
  Reported: ticks caught up and how long from scheduler start to the last `fired` record.

Run: `python -m bench.scheduler` (`--quick` for a smoke run). JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats

from bench.e2e import RESULTS, ROOT, machine, percentile
from events.ids import new_id
from events.job import JobSpec, ShellExecutor
from events.schedule import CatchupPolicy, Created, OverlapPolicy, ScheduleSpec
from events.store import EventStore, schedule_append
from events.streams import provision
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port

DOMAIN = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CREATE_CHUNK = 2000


@dataclass
class Steady:
    schedules: int
    seconds: float
    ticks: int
    expected_ticks: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    cpu_per_s: float
    peak_rss_mb: float


@dataclass
class Catchup:
    schedules: int
    interval_s: float
    downtime_s: float
    ticks: int
    seconds_to_catch_up: float
    ticks_per_s: float


@dataclass
class Report:
    at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    steady: list[Steady] = field(default_factory=list)
    catchup: list[Catchup] = field(default_factory=list)


class _Fired(msgspec.Struct):
    at: datetime
    tick: datetime
    planned_at: datetime | None = None
    reason: str = "tick"


class FiredWatch:
    def __init__(self) -> None:
        self.records: list[tuple[str, _Fired, float]] = []

    async def on_msg(self, msg: Any) -> None:
        sid = msg.subject.split(".")[3]
        self.records.append((sid, msgspec.json.decode(msg.data, type=_Fired), time.monotonic()))


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user+system) and resident MB of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return cpu, rss_kb / 1024


async def create_schedules(store: EventStore, specs: list[ScheduleSpec]) -> None:
    for start in range(0, len(specs), CREATE_CHUNK):
        items = [
            schedule_append(Created(domain=DOMAIN, actor="bench", schedule_id=new_id(), spec=s), 0)
            for s in specs[start : start + CREATE_CHUNK]
        ]
        for result in await store.append_many(items):
            if isinstance(result, BaseException):
                raise result


def start_scheduler(url: str, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "scheduler"],
        cwd=ROOT, env={**os.environ, "NATS_URL": url}, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out.close()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def job(name: str) -> JobSpec:
    return JobSpec(name=name, executor=ShellExecutor(script="true"))


async def steady(url: str, tmp: Path, n: int, seconds: float) -> Steady:
    nc = await connect(url, "bench")
    store = EventStore(nc, jetstream(nc))
    watch = FiredWatch()
    await nc.subscribe(f"ev.{DOMAIN}.schedule.*.fired", cb=watch.on_msg, pending_msgs_limit=5_000_000,
                       pending_bytes_limit=-1)  # fmt: skip
    spec = ScheduleSpec(name="every-second", job=job("every-second"), cron="* * * * * *",
                        overlap_policy=OverlapPolicy.ALLOW, misfire_grace_s=3600)  # fmt: skip
    await create_schedules(store, [msgspec.structs.replace(spec, name=f"s{i}") for i in range(n)])
    proc = start_scheduler(url, tmp / "scheduler-steady.log")
    try:
        # Let it load the schedules and lead; measure whole seconds after that.
        deadline = time.monotonic() + 60
        while not watch.records and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        begin = datetime.now(UTC)
        cpu0, _ = proc_stats(proc.pid)
        t0 = time.monotonic()
        peak = 0.0
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(0.5)
            peak = max(peak, proc_stats(proc.pid)[1])
        cpu1, _ = proc_stats(proc.pid)
        wall = time.monotonic() - t0
        end = datetime.now(UTC)
        await asyncio.sleep(3.0)  # records of the last ticks
    finally:
        stop(proc)
        await nc.close()
    window = [f for _, f, _ in watch.records if begin < f.tick <= end and f.reason == "tick"]
    late = [(f.at - (f.planned_at or f.tick)).total_seconds() * 1000 for f in window]
    expected = n * len({f.tick for f in window})
    return Steady(
        n, round(wall, 1), len(window), expected, round(percentile(late, 50), 1),
        round(percentile(late, 99), 1), round(max(late), 1), round((cpu1 - cpu0) / wall, 2), round(peak, 1),
    )  # fmt: skip


async def catchup(url: str, tmp: Path, n: int, interval_s: float, downtime_s: float) -> Catchup:
    nc = await connect(url, "bench")
    store = EventStore(nc, jetstream(nc))
    watch = FiredWatch()
    await nc.subscribe(f"ev.{DOMAIN}.schedule.*.fired", cb=watch.on_msg, pending_msgs_limit=5_000_000,
                       pending_bytes_limit=-1)  # fmt: skip
    per = int(downtime_s / interval_s)
    begin = datetime.now(UTC)
    # Anchored at `begin` and ending with the downtime, so what the scheduler does after it
    # starts is the catch-up alone, not catch-up mixed with a steady load.
    spec = ScheduleSpec(
        name="catchup", job=job("catchup"), interval_s=interval_s, overlap_policy=OverlapPolicy.ALLOW,
        catchup_policy=CatchupPolicy.FIRE_IMMEDIATELY, misfire_grace_s=0.0, catchup_window_s=3600,
        max_catchup=min(1000, per + 10), start_at=begin,
        end_at=begin + timedelta(seconds=per * interval_s),
    )  # fmt: skip
    await create_schedules(store, [msgspec.structs.replace(spec, name=f"c{i}") for i in range(n)])
    await asyncio.sleep(max(0.0, (spec.end_at - datetime.now(UTC)).total_seconds()) + 0.5)  # type: ignore[operator]
    start = time.monotonic()
    proc = start_scheduler(url, tmp / "scheduler-catchup.log")
    try:
        deadline = start + 600
        target = n * (per - 1)  # the first tick may fall before its schedule was created
        while time.monotonic() < deadline:
            caught = [r for r in watch.records if r[1].reason == "catchup"]
            if len(caught) >= target:
                await asyncio.sleep(1.0)
                break
            await asyncio.sleep(0.2)
    finally:
        stop(proc)
        await nc.close()
    caught = [r for r in watch.records if r[1].reason == "catchup"]
    took = max(r[2] for r in caught) - start if caught else float("nan")
    return Catchup(n, interval_s, downtime_s, len(caught), round(took, 2), round(len(caught) / took, 1))


async def fresh_server(tmp: Path) -> NatsServer:
    """A server of its own per phase, so one phase's schedules do not load the next."""
    server = NatsServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()
    nc = await nats.connect(server.url)
    await provision(nc.jetstream())
    await nc.close()
    return server


async def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    print(f"steady: {args.schedules} schedules every second for {args.seconds}s")
    server = await fresh_server(tmp / "steady")
    try:
        result = await steady(server.url, tmp, args.schedules, args.seconds)
    finally:
        server.stop()
    print(f"  {result}")
    report.steady.append(result)
    print(
        f"catch-up: {args.catchup_schedules} schedules every {args.catchup_interval}s, {args.downtime}s down"
    )
    server = await fresh_server(tmp / "catchup")
    try:
        caught = await catchup(server.url, tmp, args.catchup_schedules, args.catchup_interval, args.downtime)
    finally:
        server.stop()
    print(f"  {caught}")
    report.catchup.append(caught)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scheduler", description=__doc__.split("\n\n")[0])
    p.add_argument("--schedules", type=int, default=10_000, help="every-second schedules")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to measure them")
    p.add_argument("--catchup-schedules", type=int, default=100)
    p.add_argument("--catchup-interval", type=float, default=0.1, help="seconds between their ticks")
    p.add_argument("--downtime", type=float, default=10.0, help="seconds with no scheduler")
    p.add_argument("--quick", action="store_true", help="1,000 schedules for 10 s; 1,000 missed ticks")
    args = p.parse_args(argv)
    if args.quick:
        args.schedules, args.seconds, args.catchup_schedules, args.downtime = 1000, 10.0, 100, 1.0
    if min(args.schedules, args.catchup_schedules) < 1 or min(args.seconds, args.downtime) <= 0:
        p.error("counts and durations must be positive")
    if args.catchup_interval <= 0 or args.downtime / args.catchup_interval > 1000:
        p.error("--downtime / --catchup-interval must be between 1 and 1000 ticks per schedule")
    report = Report(at=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine(),
                    settings=dict(vars(args)))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="jobstream-bench-sched-") as tmp:
        asyncio.run(run(args, report, Path(tmp)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scheduler-{report.at.replace(':', '')}.json"
    out.write_text(json.dumps(asdict(report), indent=2) + "\n")
    for s in report.steady:
        print(f"\n| schedules | ticks | lateness p50 | p99 | max | scheduler CPU | peak RSS |\n"
              f"| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
              f"| {s.schedules:,} | {s.ticks:,} of {s.expected_ticks:,} | {s.lateness_p50_ms} ms | "
              f"{s.lateness_p99_ms} ms | {s.lateness_max_ms} ms | {s.cpu_per_s:.0%} of a core | "
              f"{s.peak_rss_mb} MB |")  # fmt: skip
    for c in report.catchup:
        print(
            f"\ncatch-up: {c.ticks:,} missed ticks fired in {c.seconds_to_catch_up}s ({c.ticks_per_s:,.0f}/s)"
        )
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
