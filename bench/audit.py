"""`jobstream audit verify` throughput (issue 9): events read and checked per second.

Starts a nats-server on a free loopback port in a temporary directory, writes a synthetic
log of `--jobs` four-event jobs (submitted, dispatched, started, succeeded) on one registered
worker, pipelined through events/store.py's Publisher (the server runs with the default
fsync interval: writing is set-up, not what is measured), then times `run_verify` (the read and
every check, as the CLI runs it) and prints events/s. The target is 100,000 events/s on a log
of 1,000,000 events: `--events 1000000`.

Run: `python -m bench.audit` (40,000 events, about half a minute) or
`python -m bench.audit --events 1000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from events import subjects
from events.codec import encode
from events.job import Dispatched, JobSpec, ShellExecutor, Started, Submitted, Succeeded
from events.store import Publisher
from events.streams import provision
from events.worker import Registered
from services.audit.command import run_verify
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port

DOMAIN = "bench"
WORKER = "w1"
WINDOW = 5000  # publishes in flight
# Stored events carry headers (the store's fences, trace context), so the reader sees HMSG frames.
HEADERS = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def job_events(i: int, spec: JobSpec) -> list[tuple[str, bytes]]:
    job_id = f"j{i:08d}"
    common: dict[str, Any] = {"domain": DOMAIN, "job_id": job_id, "correlation_id": job_id}
    submitted = Submitted(actor="bench", spec=spec, **common)
    dispatched = Dispatched(actor="dispatcher", worker_id=WORKER, attempt=1, spec=spec, **common)
    started = Started(
        actor=f"worker:{WORKER}", worker_id=WORKER, attempt=1, causation_id=dispatched.id, **common
    )
    done = Succeeded(actor=f"worker:{WORKER}", worker_id=WORKER, attempt=1, duration_s=0.01, **common)
    return [
        (subjects.job(DOMAIN, job_id, "submitted"), encode(submitted)),
        (subjects.job(DOMAIN, job_id, "dispatched", WORKER), encode(dispatched)),
        (subjects.job(DOMAIN, job_id, "started"), encode(started)),
        (subjects.job(DOMAIN, job_id, "succeeded"), encode(done)),
    ]


async def write_log(url: str, jobs: int) -> float:
    """Seconds taken to append the worker's registration and `jobs` four-event jobs."""
    nc = await connect(url, "bench-writer")
    await provision(jetstream(nc))
    publisher = Publisher(nc)
    spec = JobSpec(name="bench", executor=ShellExecutor(script="true"), tags=["bench"])
    began = time.perf_counter()
    reg = Registered(domain=DOMAIN, actor=f"worker:{WORKER}", worker_id=WORKER, tags=["bench"],
                     executors=["shell", "python"], max_concurrency=4)  # fmt: skip
    await (await publisher.publish(subjects.worker(DOMAIN, WORKER, "registered"), encode(reg)))
    pending: list[asyncio.Future[Any]] = []
    for i in range(jobs):
        for subject, payload in job_events(i, spec):
            pending.append(await publisher.publish(subject, payload, HEADERS))
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    took = time.perf_counter() - began
    await nc.close()
    return took


class _BenchServer(NatsServer):
    """The default fsync interval instead of the embedded server's fsync per acknowledgement:
    writing the synthetic log is set-up, and what is timed (the read) does not fsync."""

    def config_text(self) -> str:
        return ""


async def bench(events: int, tmp: Path) -> dict[str, Any]:
    server = _BenchServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()
    try:
        jobs = max(1, events // 4)
        wrote = await write_log(server.url, jobs)
        began = time.perf_counter()
        report = await run_verify(server.url)
        took = time.perf_counter() - began
    finally:
        server.stop()
    return {
        "events": report.events,
        "write_s": round(wrote, 2),
        "write_events_per_s": round((jobs * 4 + 1) / wrote),
        "audit_s": round(took, 2),
        "audit_events_per_s": round(report.events / took),
        "violations": len(report.violations),
        "gaps": report.gaps,
        "checks": len(report.checked),
        # The whole process: the writer's futures and the audit's fold (an upper bound on the audit).
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="log size (four events per job)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        result = asyncio.run(bench(args.events, Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
