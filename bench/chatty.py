"""Chatty jobs on one worker (issue 8): output lines/s the worker sustains, heartbeat gaps,
runs per job.

Starts a nats-server on a free loopback port in a temporary directory and, in this
process, a dispatcher and one worker (as tests/integration/harness.py does). Submits
`--jobs` shell jobs, each printing `--lines` lines of about 60 characters as fast as it
can, plus one `sleep` job. Reported: lines read from the jobs' pipes per second (stored and
dropped), lines stored per second, dropped lines, the largest gap between heartbeats seen
on `hb.<domain>.<worker>` (the worker fences itself at half its TTL, 3 s), and how many
times each job started. `--rate` sets the worker's per-attempt cap in lines/s (0: no
practical cap, to measure the back-pressured path alone). Bounded by `--timeout`.

Run: `python -m bench.chatty --jobs 4 --lines 200000`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from nats.js.errors import NotFoundError

from events import subjects
from events.codec import decode_log
from events.job import JobSpec, ShellExecutor, Started
from events.store import EventStore
from events.streams import logs_stream, provision
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port
from services.worker.logsink import DEFAULT_OUTPUT_LINES_PER_S
from tests.integration.harness import engine

LINE = "a line of chatty output, about sixty characters long........"


async def bench(jobs: int, lines: int, rate: float, timeout: float, tmp: Path) -> dict[str, Any]:
    server = NatsServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()
    nc = await connect(server.url, "bench")
    js = jetstream(nc)
    await provision(js)
    store = EventStore(nc, js)
    try:
        async with engine(server.url, store) as e:
            beats: list[float] = []

            async def on_beat(_msg: object) -> None:
                beats.append(time.monotonic())

            sub = await nc.subscribe(subjects.heartbeat(e.domain, "w1"), cb=on_beat)
            e.start_dispatcher()
            limits: dict[str, Any] = {"output_lines_per_s": rate or 1e9, "output_burst_lines": 50_000}
            if not rate:
                limits["output_burst_lines"] = 10**9
                limits["output_max_lines"] = 10**9
                limits["output_max_bytes"] = 1 << 40
            w = e.start_worker("w1", max_concurrency=jobs + 1, **limits)
            await e.ready("w1")
            t0 = time.monotonic()
            script = f"yes '{LINE}' | head -n {lines}"
            chatty = [
                await e.submit(JobSpec(name="chatty", executor=ShellExecutor(script=script)))
                for _ in range(jobs)
            ]
            sleeper = await e.submit(JobSpec(name="sleep", executor=ShellExecutor(script="sleep 2")))
            finals = [await e.wait(j, lambda s: s.terminal, timeout=timeout) for j in [*chatty, sleeper]]
            t1 = time.monotonic()
            await sub.unsubscribe()
            runs = []
            for j in [*chatty, sleeper]:
                history = await store.read(subjects.job_all(e.domain, j))
                runs.append(sum(1 for h in history if isinstance(h.event, Started)))
            stored = dropped = 0
            for j in chatty:
                seq = 1
                while True:
                    try:
                        raw = await js.get_msg(
                            logs_stream(e.domain),
                            seq=seq,
                            subject=subjects.logs(e.domain, j, 1),
                            next=True,
                            direct=True,
                        )
                    except NotFoundError:
                        break
                    assert raw.seq is not None
                    for line in decode_log(raw.data or b""):
                        if line.stream == "jobstream" and "lines dropped" in line.line:
                            dropped += int(line.line.split()[1].replace(",", ""))
                        elif line.stream != "jobstream":
                            stored += 1
                    seq = raw.seq + 1
            healthy = w.healthy
        window = [b for b in beats if b >= t0 - 2.5]
        gaps = [b - a for a, b in itertools.pairwise(window)] + [t1 - window[-1]]
        elapsed = t1 - t0
        return {
            "jobs": jobs,
            "lines_per_job": lines,
            "rate_cap_lines_per_s": rate or None,
            "seconds": round(elapsed, 2),
            "lines_read_per_s": round((stored + dropped) / elapsed),
            "lines_stored_per_s": round(stored / elapsed),
            "lines_stored": stored,
            "lines_dropped": dropped,
            "max_heartbeat_gap_s": round(max(gaps), 2),
            "runs_per_job": runs,
            "statuses": [str(s.status) for s in finals],
            "worker_stayed_healthy": healthy,
        }
    finally:
        await nc.close()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=DEFAULT_OUTPUT_LINES_PER_S, help="lines/s cap; 0: none")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a job may take before giving up")
    a = p.parse_args()
    if not 1 <= a.jobs <= 32 or not 1 <= a.lines <= 10_000_000:
        p.error("--jobs must be 1..32 and --lines 1..10,000,000")
    with tempfile.TemporaryDirectory(prefix="jobstream-chatty-") as tmp:
        result = asyncio.run(bench(a.jobs, a.lines, a.rate, a.timeout, Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
