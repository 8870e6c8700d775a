"""End-to-end benchmark: jobstream and Celery 5 + Redis running the same no-op, side by side.

jobstream: a whole system from `jobstream up` (embedded nats-server, API with projector,
dispatcher, local workers) on free loopback ports in a temporary data dir. Jobs go in
through `POST /jobs/batch`; completion and start times are read from the job events
themselves, by a plain NATS subscription on `ev.prod.job.>`.

Celery: redis-server from Debian's package on a free port, one `celery worker`, the
same no-op task; completion is every result arriving in the Redis backend.

Throughput is jobs submitted and finished per second, from the first submit to the
last terminal event. Latency is submit→start at a steady open-loop rate: from just
before the submitting request is sent to the job's `started` event (jobstream) or the
task's first line (Celery), both on this host's clock.

Run: `./dev bench` (or `python -m bench.e2e --help`). Figures are printed and written to
bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats

from services.runtime.nats_server import server_binary
from services.runtime.ports import accepting, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-admin-token"
SERVICE_PASSWORD = "bench-service-password"  # up makes a fresh one per start unless given
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
BATCH = 1000
BATCHES_IN_FLIGHT = 4
START_TIMEOUT_S = 90.0


@dataclass
class Throughput:
    system: str
    path: str
    jobs: int
    succeeded: int
    submit_s: float
    total_s: float
    jobs_per_s: float


@dataclass
class Latency:
    system: str
    path: str
    rate_per_s: float
    jobs: int
    started: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    submit_ack_p50_ms: float | None = None
    submit_ack_p99_ms: float | None = None
    # Where the time goes (jobstream): request -> `submitted` appended -> `dispatched` -> `started`.
    stages_p50_ms: dict[str, float] | None = None
    stages_p99_ms: dict[str, float] | None = None


@dataclass
class Report:
    at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Exception):
            if cond():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not reached in {timeout:.0f}s")


# ---- jobstream -------------------------------------------------------------------


class _At(msgspec.Struct):
    at: datetime


class EventWatch:
    """Records, for every job, when its `started` happened and when its terminal event arrived."""

    def __init__(self) -> None:
        self.submitted_at: dict[str, float] = {}
        self.dispatched_at: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.finished: dict[str, tuple[str, float]] = {}

    async def on_msg(self, msg: Any) -> None:
        parts = msg.subject.split(".")
        if len(parts) < 5:
            return
        job_id, kind = parts[3], parts[4]
        if kind in ("submitted", "dispatched", "started"):
            at = msgspec.json.decode(msg.data, type=_At).at.timestamp()
            getattr(self, f"{kind}_at")[job_id] = at
        elif kind in TERMINAL:
            self.finished[job_id] = (kind, time.perf_counter())

    async def wait_finished(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.finished for i in ids):
                return
            await asyncio.sleep(0.02)
        missing = sum(1 for i in ids if i not in self.finished)
        raise RuntimeError(f"{missing} of {len(ids)} jobs not finished in {timeout:.0f}s")


class Jobstream:
    """`jobstream up` in a temporary data dir, on free ports."""

    def __init__(self, tmp: Path, workers: int, concurrency: int) -> None:
        self.tmp = tmp
        self.workers = workers
        self.concurrency = concurrency
        self.api_port = free_port()
        self.nats_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    @property
    def nats_url(self) -> str:
        """With the service login, which the benchmark gives `up`: the server refuses anonymous clients."""
        return f"nats://jobstream:{SERVICE_PASSWORD}@127.0.0.1:{self.nats_port}"

    def start(self) -> None:
        log = open(self.tmp / "up.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "services.cli", "up", "--data-dir", str(self.tmp / "data"),
                "--port", str(self.api_port), "--nats-port", str(self.nats_port),
                "--workers", str(self.workers), "--worker-concurrency", str(self.concurrency),
            ],
            cwd=ROOT, env={**os.environ, "ADMIN_TOKEN": TOKEN, "NATS_SERVICE_PASSWORD": SERVICE_PASSWORD},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"jobstream up exited:\n{(self.tmp / 'up.log').read_text()[-3000:]}")
            live = httpx.get(f"{self.api}/workers", headers=headers, timeout=2).json()
            return sum(1 for w in live if w["status"] == "active") >= self.workers

        wait_until(ready, START_TIMEOUT_S, "jobstream up with its workers")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def callable_job(i: int) -> dict[str, Any]:
    return {"name": "bench-noop", "executor": {"type": "python", "callable": "bench.tasks:noop"}}


def shell_job(i: int) -> dict[str, Any]:
    return {"name": "bench-true", "executor": {"type": "shell", "script": "true"}}


async def js_throughput(
    client: httpx.AsyncClient, watch: EventWatch, path: str, make: Callable[[int], dict[str, Any]], n: int
) -> Throughput:
    ids: list[str] = []
    gate = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def send(start: int) -> list[str]:
        async with gate:
            body = {"jobs": [make(i) for i in range(start, min(n, start + BATCH))]}
            r = await client.post("/jobs/batch", json=body)
            r.raise_for_status()
            return list(r.json()["ids"])

    t0 = time.perf_counter()
    for chunk in await asyncio.gather(*(send(s) for s in range(0, n, BATCH))):
        ids.extend(chunk)
    submitted = time.perf_counter() - t0
    await watch.wait_finished(ids, timeout=max(120.0, n / 50))
    end = max(watch.finished[i][1] for i in ids)
    ok = sum(1 for i in ids if watch.finished[i][0] == "succeeded")
    total = end - t0
    return Throughput("jobstream", path, n, ok, round(submitted, 3), round(total, 3), round(n / total, 1))


async def js_latency(client: httpx.AsyncClient, watch: EventWatch, rate: float, seconds: float) -> Latency:
    n = max(1, int(rate * seconds))
    sent: dict[str, float] = {}
    acks: list[float] = []

    async def submit() -> None:
        t_send = time.time()
        r = await client.post("/jobs", json=callable_job(0))
        acks.append(time.time() - t_send)
        r.raise_for_status()
        sent[r.json()["id"]] = t_send

    t0 = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(submit()))
    await asyncio.gather(*tasks)
    ids = list(sent)
    await watch.wait_finished(ids, timeout=120)
    lat = [(watch.started_at[i] - sent[i]) * 1000 for i in ids if i in watch.started_at]
    marks = [sent, watch.submitted_at, watch.dispatched_at, watch.started_at]
    names = ["request->submitted", "submitted->dispatched", "dispatched->started"]
    stages = {
        name: [(marks[k + 1][i] - marks[k][i]) * 1000 for i in ids if all(i in m for m in marks)]
        for k, name in enumerate(names)
    }
    # The server's own part, free of the HTTP client and request handling: event to event.
    stages["submitted->started"] = [
        (watch.started_at[i] - watch.submitted_at[i]) * 1000
        for i in ids
        if i in watch.started_at and i in watch.submitted_at
    ]
    return Latency(
        "jobstream", "python callable", rate, n, len(lat),
        round(percentile(lat, 50), 2), round(percentile(lat, 99), 2), round(max(lat), 2),
        round(percentile(acks, 50) * 1000, 2), round(percentile(acks, 99) * 1000, 2),
        {k: round(percentile(v, 50), 2) for k, v in stages.items()},
        {k: round(percentile(v, 99), 2) for k, v in stages.items()},
    )  # fmt: skip


async def run_jobstream(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    system = Jobstream(tmp, args.workers, args.concurrency)
    os.environ["JOBSTREAM_NATS_SYNC_INTERVAL"] = args.nats_sync_interval  # read by `up`'s server
    print(
        f"jobstream: starting `jobstream up` with {args.workers} workers x {args.concurrency} slots, "
        f"fsync {args.nats_sync_interval}"
    )
    system.start()
    nc = await nats.connect(system.nats_url)
    watch = EventWatch()
    await nc.subscribe("ev.prod.job.>", cb=watch.on_msg, pending_msgs_limit=2_000_000, pending_bytes_limit=-1)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    try:
        async with httpx.AsyncClient(
            base_url=system.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120, limits=limits
        ) as client:
            await js_throughput(client, watch, "warm-up", callable_job, min(1000, args.jobs))
            # Latency first, on a quiet system: after the throughput runs the projector and
            # DuckDB are still digesting their backlog for a while.
            if args.latency_seconds > 0:
                lat = await js_latency(client, watch, args.latency_rate, args.latency_seconds)
                print(f"  submit->start at {lat.rate_per_s}/s: p50 {lat.p50_ms} ms, p99 {lat.p99_ms} ms")
                print(f"    stages p50 {lat.stages_p50_ms}\n    stages p99 {lat.stages_p99_ms}")
                report.latency.append(lat)
            for path, make, n in (
                ("python callable", callable_job, args.jobs),
                ("shell true", shell_job, args.shell_jobs),
            ):
                if n:
                    result = await js_throughput(client, watch, path, make, n)
                    print(f"  {path}: {result.jobs} jobs in {result.total_s}s = {result.jobs_per_s} jobs/s")
                    report.throughput.append(result)
    finally:
        await nc.close()
        system.stop()


# ---- Celery ----------------------------------------------------------------------


def run_celery(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = subprocess.Popen(
        [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: accepting("127.0.0.1", port), 30, "redis-server")
        os.environ["BENCH_REDIS_URL"] = url
        from bench.celery_app import app, noop

        app.conf.broker_url = app.conf.result_backend = url
        log = open(tmp / "celery.log", "wb")  # noqa: SIM115
        print(f"celery: {args.celery_pool} pool x {args.celery_concurrency} on redis at {url}")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "--pool", args.celery_pool,
             "--concurrency", str(args.celery_concurrency), "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env={**os.environ, "BENCH_REDIS_URL": url}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        noop.delay().get(timeout=START_TIMEOUT_S)

        from celery.result import ResultSet

        def throughput(n: int, path: str) -> Throughput:
            t0 = time.perf_counter()
            results = [noop.delay() for _ in range(n)]
            submitted = time.perf_counter() - t0
            ResultSet(results).join_native(timeout=max(120.0, n / 50), propagate=True)
            total = time.perf_counter() - t0
            return Throughput("celery", path, n, n, round(submitted, 3), round(total, 3), round(n / total, 1))

        throughput(min(1000, args.celery_jobs), "warm-up")
        if args.celery_jobs:
            result = throughput(args.celery_jobs, "python callable")
            print(f"  no-op task: {result.jobs} in {result.total_s}s = {result.jobs_per_s} jobs/s")
            report.throughput.append(result)
        if args.latency_seconds > 0:
            n = max(1, int(args.latency_rate * args.latency_seconds))
            sends: list[tuple[float, Any]] = []
            acks: list[float] = []
            t0 = time.perf_counter()
            for i in range(n):
                delay = t0 + i / args.latency_rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t_send = time.time()
                sends.append((t_send, noop.delay()))
                acks.append(time.time() - t_send)
            lat = [(float(r.get(timeout=120)) - t) * 1000 for t, r in sends]
            result_lat = Latency(
                "celery", "python callable", args.latency_rate, n, len(lat),
                round(percentile(lat, 50), 2), round(percentile(lat, 99), 2), round(max(lat), 2),
                round(percentile(acks, 50) * 1000, 2), round(percentile(acks, 99) * 1000, 2),
            )  # fmt: skip
            print(f"  submit->start: p50 {result_lat.p50_ms} ms, p99 {result_lat.p99_ms} ms")
            report.latency.append(result_lat)
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        redis.terminate()
        redis.wait(10)


# ---- main ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    version = subprocess.run([server_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nats_server": version,
        "nats_py": _version("nats-py"),
        "celery": _version("celery"),
        "duckdb": _version("duckdb"),
    }


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20_000, help="python callable jobs for throughput")
    p.add_argument("--shell-jobs", type=int, default=2_000, help="shell `true` jobs for throughput")
    p.add_argument("--workers", type=int, default=2, help="jobstream local workers")
    p.add_argument("--concurrency", type=int, default=32, help="slots per jobstream worker")
    p.add_argument("--latency-rate", type=float, default=100.0, help="jobs/s for the latency run")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="length of the latency run (0: skip)")
    p.add_argument("--celery-jobs", type=int, default=None, help="no-op tasks for Celery [default: --jobs]")
    p.add_argument("--celery-pool", default="prefork", choices=["prefork", "threads", "solo"])
    p.add_argument("--celery-concurrency", type=int, default=os.cpu_count() or 2)
    p.add_argument("--skip-celery", action="store_true", help="measure jobstream only")
    p.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    p.add_argument(
        "--nats-sync-interval", default="always",
        help="the embedded server's JetStream fsync (always: before every ack, as jobstream runs; "
        "2m: the nats-server default), to measure what durability costs",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.shell_jobs, args.latency_seconds = 2_000, 200, 3.0
    if args.celery_jobs is None:
        args.celery_jobs = args.jobs
    for name in ("jobs", "shell_jobs", "workers", "concurrency", "celery_jobs", "celery_concurrency"):
        if getattr(args, name) < 0 or (name in ("workers", "concurrency") and getattr(args, name) < 1):
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.latency_rate <= 0 or args.latency_seconds < 0:
        p.error("--latency-rate must be > 0 and --latency-seconds >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report = Report(
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
        settings=dict(vars(args)),
    )
    with tempfile.TemporaryDirectory(prefix="jobstream-bench-") as tmp:
        asyncio.run(run_jobstream(args, report, Path(tmp)))
        if not args.skip_celery:
            run_celery(args, report, Path(tmp))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"e2e-{report.at.replace(':', '')}.json"
    out.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print_table(report)
    print(f"written to {out.relative_to(ROOT)}")
    return 0


def print_table(report: Report) -> None:
    print("\n| system | path | jobs | jobs/s |\n| --- | --- | ---: | ---: |")
    for t in report.throughput:
        print(f"| {t.system} | {t.path} | {t.jobs:,} | {t.jobs_per_s:,.0f} |")
    print("\n| system | rate | submit→start p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |")
    for lat in report.latency:
        print(
            f"| {lat.system} | {lat.rate_per_s:.0f}/s | {lat.p50_ms:.1f} ms | {lat.p99_ms:.1f} ms "
            f"| {lat.max_ms:.1f} ms |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
