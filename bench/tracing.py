"""What tracing costs: `./dev bench` (bench/e2e.py, jobstream only) with tracing off and on, alternated.

On: every service exports over OTLP/HTTP (at each `--ratios` value: 1 is
`parentbased_always_on`, every job traced; below 1, `parentbased_traceidratio`, 0.01 being
what jobstream samples when no sampler is chosen) to a loopback
sink in its own process that answers like a collector (200 to `POST /v1/traces`) and counts
what it gets, so export cost (protobuf encoding, HTTP) is in the figure. Off: no endpoint, no
provider. Runs alternate off/on to spread the shared machine's drift over both. Two figures
per run: throughput (jobs/s of the python-callable run), and the CPU seconds the whole
`jobstream up` tree (nats-server, API, dispatcher, scheduler, workers) used for the run, from
getrusage(RUSAGE_CHILDREN) once it is reaped (the sink is not in it).
Figures are printed and written to bench/results/ as JSON.

Run: `python -m bench.tracing` (`--rounds 2 --jobs 5000 --ratios 0.01,1 --nats-sync-interval
always`; `--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from bench import e2e
from services.runtime.ports import accepting, free_port

RESULTS = Path(__file__).resolve().parent / "results"


class _Sink(BaseHTTPRequestHandler):
    requests: ClassVar[int] = 0
    received: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests += 1
        type(self).received += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # the count, for the report
        data = json.dumps({"requests": type(self).requests, "bytes": type(self).received}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve_sink(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Sink).serve_forever()


@contextmanager
def sink() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.tracing", "--sink", str(port)])
    try:
        deadline = time.monotonic() + 10
        while not accepting("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the OTLP sink did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def sink_counts(endpoint: str) -> dict[str, int]:
    import httpx

    counts: dict[str, int] = httpx.get(endpoint + "/", timeout=5).json()
    return counts


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(args: argparse.Namespace, endpoint: str | None, ratio: float) -> tuple[float, float]:
    """jobs/s of the python-callable throughput run, and the CPU seconds of the system for the
    whole run (start, warm-up, run, stop), tracing on (endpoint, sampling `ratio`) or off."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        os.environ.pop(name, None)
    if endpoint:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        if ratio < 1:
            os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            os.environ["OTEL_TRACES_SAMPLER_ARG"] = str(ratio)
        else:  # said, not left to the default (one in a hundred)
            os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
    argv = ["--skip-celery", "--jobs", str(args.jobs), "--shell-jobs", "0", "--latency-seconds", "0"]
    argv += ["--workers", str(args.workers), "--nats-sync-interval", args.nats_sync_interval]
    before = set(RESULTS.glob("e2e-*.json")) if RESULTS.is_dir() else set()
    cpu = _children_cpu_s()
    e2e.main(argv)
    cpu = _children_cpu_s() - cpu
    [written] = set(RESULTS.glob("e2e-*.json")) - before
    report = json.loads(written.read_text())
    written.unlink()  # this script's own report holds the figures
    [result] = [t for t in report["throughput"] if t["path"] == "python callable"]
    return float(result["jobs_per_s"]), round(cpu, 2)


def retried(
    args: argparse.Namespace, endpoint: str | None, ratio: float, attempts: int = 3
) -> tuple[float, float]:
    """One run, again if it failed: on a shared machine a batch can outwait the API's 10 s
    read-your-writes bound (503), which says nothing of tracing. Failures are printed."""
    for attempt in range(1, attempts + 1):
        try:
            return one_run(args, endpoint, ratio)
        except Exception as exc:
            mode = f"on at {ratio}" if endpoint else "off"
            print(f"run failed (attempt {attempt} of {attempts}, tracing {mode}): {exc}")
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds of: off, then on at each ratio")
    p.add_argument("--jobs", type=int, default=5_000, help="python callable jobs per run")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--ratios", default="0.01,1",
        help="sampling ratios to measure, comma-separated (1: every job, parentbased_always_on; <1: "
        "parentbased_traceidratio; 0.01 is the default when tracing is on)",
    )  # fmt: skip
    p.add_argument(
        "--nats-sync-interval", default="always",
        help="the server's fsync (always: as jobstream runs, disk-bound; 2m: CPU-bound, where "
        "tracing's CPU shows most)",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="one round of 1,000 jobs")
    p.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sink:
        serve_sink(args.sink)
        return 0
    if args.quick:
        args.rounds, args.jobs = 1, 1_000
    try:
        ratios = [float(r) for r in args.ratios.split(",")]
    except ValueError:
        p.error(f"--ratios must be numbers, comma-separated: {args.ratios!r}")
    if args.rounds < 1 or args.jobs < 1 or not all(0 < r <= 1 for r in ratios):
        p.error("--rounds and --jobs must be positive, each ratio in (0, 1]")
    modes: list[tuple[str, float | None]] = [("off", None)] + [(f"on {r:g}", r) for r in ratios]
    rates: dict[str, list[float]] = {name: [] for name, _ in modes}
    cpus: dict[str, list[float]] = {name: [] for name, _ in modes}
    with sink() as endpoint:
        for _ in range(args.rounds):
            for name, ratio in modes:
                rate, cpu = retried(args, endpoint if ratio is not None else None, ratio or 1.0)
                rates[name].append(rate)
                cpus[name].append(cpu)
        counts = sink_counts(endpoint)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        os.environ.pop(name, None)
    base_rate, base_cpu = statistics.mean(rates["off"]), statistics.mean(cpus["off"])
    at = datetime.now(UTC).isoformat(timespec="seconds")
    result: dict[str, Any] = {
        "at": at,
        "machine": e2e.machine(),
        "settings": vars(args),
        "sink": counts,
        "modes": {
            name: {
                "jobs_per_s": rates[name],
                "cpu_s": cpus[name],
                "mean_jobs_per_s": round(statistics.mean(rates[name]), 1),
                "mean_cpu_s": round(statistics.mean(cpus[name]), 2),
                "throughput_cost_pct": round((1 - statistics.mean(rates[name]) / base_rate) * 100, 1),
                "cpu_cost_pct": round((statistics.mean(cpus[name]) / base_cpu - 1) * 100, 1),
            }
            for name, _ in modes
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"tracing-{at.replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| tracing | callable jobs/s (runs) | throughput cost | system CPU s per run | CPU cost |")
    print("| --- | --- | ---: | --- | ---: |")
    for name, m in result["modes"].items():
        runs, cpu_runs = ", ".join(f"{r:g}" for r in m["jobs_per_s"]), ", ".join(f"{c:g}" for c in m["cpu_s"])
        print(f"| {name} | {runs} | {m['throughput_cost_pct']}% | {cpu_runs} | {m['cpu_cost_pct']}% |")
    print(f"the sink got {counts['requests']} OTLP requests, {counts['bytes']:,} bytes; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
