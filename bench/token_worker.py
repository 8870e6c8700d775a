"""What a domain token costs a worker: the same jobs, once on a worker with the service login,
once on a worker logged in with a domain token (its reports, heartbeats and output then go
through broker-auth's ingress, its reads through the read proxy).

One `jobstream up` with no local workers, one domain, one worker at a time (same id pattern,
same concurrency). Throughput is jobs submitted through `POST /jobs/batch` and finished per
second, as in bench/e2e.py.

Run: `python -m bench.token_worker [--jobs 2000] [--concurrency 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import nats

from bench.e2e import (
    ROOT,
    TOKEN,
    EventWatch,
    Jobstream,
    callable_job,
    js_throughput,
    percentile,
    shell_job,
    wait_until,
)

DOMAIN = "bench"


def _start_worker(
    js: Jobstream, worker_id: str, concurrency: int, token: str | None
) -> subprocess.Popen[bytes]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "API_TOKEN", "WORKER_DOMAIN_TOKEN")
    }
    url = js.nats_url
    if token is not None:
        env["WORKER_DOMAIN_TOKEN"] = token
        url = f"nats://127.0.0.1:{js.nats_port}"  # the token is the only credential
    argv = [sys.executable, "-m", "services.cli", "worker", "--nats-url", url, "--id", worker_id]
    argv += ["--domain", DOMAIN, "--max-concurrency", str(concurrency)]
    log = open(js.tmp / f"{worker_id}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def _active(js: Jobstream, worker_id: str) -> bool:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Domain": DOMAIN}
    r = httpx.get(f"{js.api}/workers/{worker_id}", headers=headers, timeout=2)
    return r.status_code == 200 and r.json()["status"] == "active"


def _make_domain(js: Jobstream) -> str:
    made = httpx.post(
        f"{js.api}/admin/domains", json={"name": DOMAIN}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    made.raise_for_status()
    return str(made.json()["token"]["token"])


async def _run(js: Jobstream, token: str, n: int, concurrency: int) -> list[dict[str, object]]:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    nc = await nats.connect(js.nats_url)
    watch = EventWatch()
    await nc.subscribe(
        f"ev.{DOMAIN}.job.>", cb=watch.on_msg, pending_msgs_limit=2_000_000, pending_bytes_limit=-1
    )
    results: list[dict[str, object]] = []
    try:
        async with httpx.AsyncClient(
            base_url=js.api, headers={**admin, "X-Domain": DOMAIN}, timeout=60
        ) as client:
            for login, worker_token in (("service login", None), ("domain token", token)):
                worker_id = "svc-1" if worker_token is None else "tok-1"
                proc = _start_worker(js, worker_id, concurrency, worker_token)
                try:
                    ready = functools.partial(_active, js, worker_id)
                    await asyncio.to_thread(wait_until, ready, 60, f"worker {worker_id}")
                    for path, make in (("callable", callable_job), ("shell", shell_job)):
                        before = set(watch.started_at)
                        result = await js_throughput(client, watch, path, make, n)
                        ids = [i for i in watch.started_at if i not in before and i in watch.dispatched_at]
                        waits = sorted((watch.started_at[i] - watch.dispatched_at[i]) * 1000 for i in ids)
                        row = {
                            "login": login,
                            "path": path,
                            "jobs": n,
                            "succeeded": result.succeeded,
                            "jobs_per_s": result.jobs_per_s,
                            "dispatched_to_started_p50_ms": round(percentile(waits, 50), 1),
                            "dispatched_to_started_p99_ms": round(percentile(waits, 99), 1),
                        }
                        print(row, flush=True)
                        results.append(row)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)

    finally:
        await nc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per run (bounded: 1..100000)")
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's max concurrency")
    args = parser.parse_args()
    if not 1 <= args.jobs <= 100_000:
        parser.error("--jobs must be between 1 and 100000")
    with tempfile.TemporaryDirectory(prefix="jobstream-bench-") as tmp:
        js = Jobstream(Path(tmp), workers=0, concurrency=args.concurrency)
        js.start()
        try:
            asyncio.run(_run(js, _make_domain(js), args.jobs, args.concurrency))
        finally:
            js.stop()


if __name__ == "__main__":
    main()
