"""Time travel latency (issue 11): `GET /jobs/{id}?as_of_seq=N` for a job of 100 events, p50/p99.

Starts a nats-server on a free loopback port in a temporary directory, writes `--background`
events of other jobs with the target job's 100 events (submitted, then dispatched / started /
requeued cycles) spread evenly among them, starts `jobstream api` in a process of its own on
another loopback port, waits until its read model holds the whole log, then asks over HTTP for
the job as of `--requests` sequences: every fifth its last event's (all 100 folded), the others
a random one within its life. The target is a p99 under 50 ms.

Run: `python -m bench.as_of` (20,000 background events, 500 requests, about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.audit import _BenchServer, job_events
from events import subjects
from events.codec import encode
from events.job import Dispatched, JobSpec, Requeued, ShellExecutor, Started, Submitted
from events.store import Publisher
from events.streams import provision
from services.runtime.connect import connect, jetstream
from services.runtime.ports import free_port

DOMAIN = "prod"  # the domain the API creates at start
WORKER = "w1"
TOKEN = "bench-admin-token"
TARGET = "jtarget00000001"
TARGET_EVENTS = 100
WINDOW = 2000  # background publishes in flight


def target_events(spec: JobSpec) -> list[tuple[str, bytes]]:
    common: dict[str, Any] = {"domain": DOMAIN, "job_id": TARGET, "correlation_id": TARGET}
    out = [(subjects.job(DOMAIN, TARGET, "submitted"), encode(Submitted(actor="bench", spec=spec, **common)))]
    attempt = 1
    while len(out) < TARGET_EVENTS:
        cycle = [
            Dispatched(actor="dispatcher", worker_id=WORKER, attempt=attempt, spec=spec, **common),
            Started(actor=f"worker:{WORKER}", worker_id=WORKER, attempt=attempt, **common),
            Requeued(actor="dispatcher", worker_id=WORKER, attempt=attempt, reason="bench", **common),
        ]
        for event in cycle[: TARGET_EVENTS - len(out)]:
            worker = WORKER if event.type == "dispatched" else None
            out.append((subjects.job(DOMAIN, TARGET, event.type, worker), encode(event)))
        attempt += 1
    return out


async def write_log(url: str, background: int) -> list[int]:
    """Write the log; the stream sequences of the target job's events."""
    nc = await connect(url, "bench-writer")
    await provision(jetstream(nc))
    publisher = Publisher(nc)
    spec = JobSpec(name="bench", executor=ShellExecutor(script="true"), tags=["bench"])
    mine = target_events(spec)
    jobs = background // 4
    every = max(1, jobs // len(mine))  # other jobs between two of the target's events
    seqs: list[int] = []
    pending: list[asyncio.Future[Any]] = []
    for i in range(jobs):
        if i % every == 0 and len(seqs) < len(mine):
            await asyncio.gather(*pending)
            pending = []
            seqs.append((await (await publisher.publish(*mine[len(seqs)]))).seq)
        pending += [await publisher.publish(s, p) for s, p in job_events(i, spec)]
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    for subject, payload in mine[len(seqs) :]:
        seqs.append((await (await publisher.publish(subject, payload))).seq)
    await nc.close()
    return seqs


@contextlib.contextmanager
def serve(url: str, tmp: Path) -> Iterator[int]:
    """`jobstream api` in a process of its own (as deployed: the client here shares no GIL with it)."""
    port = free_port()
    cmd = [sys.executable, "-m", "services.cli", "api", "--nats-url", url, "--port", str(port)]
    cmd += ["--db", str(tmp / "projection.duckdb")]
    log = (tmp / "api.log").open("w")
    proc = subprocess.Popen(cmd, env={**os.environ, "ADMIN_TOKEN": TOKEN}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start: {(tmp / 'api.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
                if ready.status_code == 200 and ready.json().get("projection_lag") == 0:
                    break  # the read model holds the whole log: no request reads a tail
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def bench(background: int, requests: int, tmp: Path) -> dict[str, Any]:
    nats = _BenchServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()
    try:
        seqs = asyncio.run(write_log(nats.url, background))
        with serve(nats.url, tmp) as port:
            rng = random.Random(11)
            headers = {"Authorization": f"Bearer {TOKEN}", "X-Domain": DOMAIN}
            took: list[float] = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers) as client:
                for n in range(requests + 20):
                    # The first asks fold all 100 events; the rest any prefix of the job.
                    at = seqs[-1] if n % 5 == 0 else rng.randint(seqs[0], seqs[-1])
                    began = time.perf_counter()
                    r = client.get(f"/jobs/{TARGET}", params={"as_of_seq": at})
                    elapsed = time.perf_counter() - began
                    r.raise_for_status()
                    if n >= 20:  # warm-up: connections, first imports
                        took.append(elapsed)
            last = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/jobs/{TARGET}",
                params={"as_of_seq": seqs[-1]},
                headers=headers,
            ).json()
    finally:
        nats.stop()
    took.sort()
    return {
        "log_events": background // 4 * 4 + len(seqs),
        "job_events": len(seqs),
        "job_as_of_last_seq": {"status": last["status"], "attempt": last["attempt"], "seq": last["last_seq"]},
        "requests": len(took),
        "p50_ms": round(statistics.median(took) * 1000, 2),
        "p99_ms": round(took[int(len(took) * 0.99) - 1] * 1000, 2),
        "max_ms": round(took[-1] * 1000, 2),
        # The VM is shared: what else ran while this was measured.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--background", type=int, default=20_000, help="events of other jobs in the log")
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-as-of-") as tmp:
        print(json.dumps(bench(args.background, args.requests, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
