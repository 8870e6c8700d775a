"""Crash recovery with real processes: SIGKILL of everything, then the same fleet started again
on the same store. A worker id is not an identity across processes: what an earlier run of
`w1` held is handed back when the new run registers, not counted against its slots forever."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from services.runtime.ports import free_port
from tests.e2e.system import TERMINAL, System, shell_job
from tests.e2e.up import Up

pytestmark = pytest.mark.slow


def test_sigkill_of_every_process_then_a_restart_finishes_every_job_once(
    system: System, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    line = '"$JOBSTREAM_JOB_ID $JOBSTREAM_ATTEMPT'
    stamp = '$(date +%s.%N)" >> ' + str(ledger)
    script = f"echo {line} start {stamp}; sleep 15; echo {line} end {stamp}"  # outlives the restart
    with system.client() as c:
        ids = [c.post("/jobs", json=shell_job(script, name=f"crash-{i}")).json()["id"] for i in range(12)]
        # 8 slots: 8 running, 4 pending when the machine "crashes".
        system.wait(
            lambda: sum(c.get(f"/jobs/{j}").json()["status"] == "running" for j in ids) == 8, timeout=30
        )
    for name in list(system.procs):
        system.stop(name, signal.SIGKILL)
    assert system.nats.proc is not None
    system.nats.proc.kill()
    system.nats.proc.wait()

    system.nats.start()
    system.start_api()
    system.start_dispatcher()
    system.start_worker("w1", "--max-concurrency", "4")
    system.start_worker("w2", "--max-concurrency", "4")
    done = system.wait_terminal(ids, timeout=60)
    assert Counter(j["status"] for j in done.values()) == {"succeeded": 12}
    with system.client() as c:
        for job_id in ids:
            events = c.get(f"/jobs/{job_id}/events").json()
            types = [e["type"] for e in events]
            assert types[0] == "submitted" and types[-1] == "succeeded", types
            assert sum(t in TERMINAL for t in types) == 1, types
            starts = Counter(e["attempt"] for e in events if e["type"] == "started")
            assert all(n == 1 for n in starts.values()), types  # never two starts of one attempt
            if done[job_id]["attempt"] > 1:
                requeued = [e for e in events if e["type"] == "requeued"]
                assert requeued and "restarted" in requeued[0]["reason"], requeued
    # The jobs a killed worker ran live on in their own sessions; its next run kills them before
    # it registers, so no attempt ran on beside the next one.
    spans: dict[tuple[str, str], dict[str, float]] = {}
    for raw in ledger.read_text().splitlines():
        job, attempt, what, at = raw.split()
        spans.setdefault((job, attempt), {})[what] = float(at)
    for (job, attempt), span in spans.items():
        later = spans.get((job, str(int(attempt) + 1)))
        if later is not None and "end" in span:
            assert span["end"] < later["start"], f"job {job}: attempt {attempt} ran on beside the next"


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (children, grandchildren, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_sigkill_of_a_whole_up_then_up_again_on_the_same_data_dir(tmp_path: Path) -> None:
    """The scenario as a user meets it: a machine crash under `jobstream up` (every process,
    the nats-server and the jobs included), then `jobstream up` again."""
    data = tmp_path / "data"
    args = ("--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "1")
    up = Up(data, *args).wait_banner()
    try:
        with up.client() as c:
            ids = [c.post("/jobs", json=shell_job("sleep 3", name=f"up-{i}")).json()["id"] for i in range(6)]
            deadline = time.monotonic() + 30
            while sum(c.get(f"/jobs/{j}").json()["status"] == "running" for j in ids) < 4:
                assert time.monotonic() < deadline, "the jobs never started"
                time.sleep(0.2)
    finally:
        for pid in [up.proc.pid, *_descendants(up.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        up.proc.wait(10)
    again = Up(data, *args).wait_banner()
    try:
        with again.client() as c:
            deadline = time.monotonic() + 60
            while True:
                jobs = [c.get(f"/jobs/{j}").json() for j in ids]
                if all(j["status"] in TERMINAL for j in jobs):
                    break
                assert time.monotonic() < deadline, [(j["status"], j["pending_reason"]) for j in jobs]
                time.sleep(0.3)
            assert Counter(j["status"] for j in jobs) == {"succeeded": 6}
            for job_id in ids:
                types = [e["type"] for e in c.get(f"/jobs/{job_id}/events").json()]
                assert sum(t in TERMINAL for t in types) == 1 and types[-1] == "succeeded", types
    finally:
        assert again.stop() == 0
