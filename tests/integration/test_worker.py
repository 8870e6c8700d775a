"""Worker behaviour below the API: executors, logs, timeouts, cancel, fencing, draining."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from events.job import (
    Completion,
    JobSpec,
    JobStatus,
    PythonExecutor,
    ShellExecutor,
    decide_cancel,
)
from events.store import EventStore, job_append
from events.streams import provision
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.harness import engine


def shell(script: str, **kw: object) -> JobSpec:
    return JobSpec(name="t", executor=ShellExecutor(script=script), **kw)  # type: ignore[arg-type]


def pid_alive(pid: int) -> bool:
    """Running or sleeping; a zombie (killed, not yet reaped by whoever adopted it) is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def wait_file(path: Path, timeout: float = 10) -> str:
    for _ in range(int(timeout / 0.05)):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never written")


async def test_executors_env_cwd_and_results(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        e.start_worker("w1", max_concurrency=4)
        jobs = {
            "env": await e.submit(
                shell('test "$GREETING" = hi && test -n "$JOBSTREAM_JOB_ID"', env={"GREETING": "hi"})
            ),
            "cwd": await e.submit(shell(f'test "$(pwd)" = "{tmp_path}"', cwd=str(tmp_path))),
            "bash": await e.submit(
                JobSpec(name="b", executor=ShellExecutor(script="[[ 1 == 1 ]]", shell="bash"))
            ),
            "pyscript": await e.submit(
                JobSpec(name="p", executor=PythonExecutor(script="import sys; sys.exit(4)"))
            ),
            "module": await e.submit(
                JobSpec(name="m", executor=PythonExecutor(module="json.tool", args=["--help"]))
            ),
            "callable": await e.submit(
                JobSpec(name="c", executor=PythonExecutor(callable="operator:mul", args=[6, 7]))
            ),
            "raises": await e.submit(
                JobSpec(name="r", executor=PythonExecutor(callable="math:sqrt", args=[-1]))
            ),
            "nocwd": await e.submit(shell("true", cwd="/does/not/exist")),
            "secret": await e.submit(shell('test -z "$WORKER_DOMAIN_TOKEN"')),
        }
        done = {k: await e.wait(v, lambda s: s.terminal) for k, v in jobs.items()}
    assert done["env"].status is JobStatus.SUCCEEDED
    assert done["cwd"].status is JobStatus.SUCCEEDED
    assert done["bash"].status is JobStatus.SUCCEEDED
    assert done["pyscript"].status is JobStatus.FAILED and done["pyscript"].exit_code == 4
    assert done["module"].status is JobStatus.SUCCEEDED
    assert done["callable"].status is JobStatus.SUCCEEDED and done["callable"].result == 42
    assert done["raises"].status is JobStatus.FAILED and "ValueError" in (done["raises"].error or "")
    assert done["nocwd"].status is JobStatus.FAILED and "does not exist" in (done["nocwd"].error or "")
    assert done["secret"].status is JobStatus.SUCCEEDED


async def test_completion_criteria(nats_server: NatsServer, store: EventStore) -> None:
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        e.start_worker("w1")
        ok = await e.submit(shell("echo READY; exit 3", completion=Completion([0, 3], "READY", None)))
        missing = await e.submit(shell("echo nope", completion=Completion([0], "READY", None)))
        forbidden = await e.submit(shell("echo FATAL x", completion=Completion([0], None, "FATAL")))
        code = await e.submit(shell("exit 1"))
        states = [await e.wait(j, lambda s: s.terminal) for j in (ok, missing, forbidden, code)]
    assert [s.status for s in states] == [
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.FAILED,
        JobStatus.FAILED,
    ]
    assert "never matched" in (states[1].error or "")
    assert "forbidden pattern" in (states[2].error or "")
    assert "exit code 1 not in allowed" in (states[3].error or "")


async def test_timeout_kills_the_whole_process_group(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        e.start_worker("w1")
        job = await e.submit(shell(f"sleep 60 & echo $! > {pidfile}; wait", timeout_s=1.0))
        child = int(await wait_file(pidfile))
        state = await e.wait(job, lambda s: s.terminal)
    assert state.status is JobStatus.TIMED_OUT
    await asyncio.sleep(0.2)
    assert not pid_alive(child)


async def test_cancel_running_job_kills_it_within_two_seconds(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        e.start_worker("w1")
        job = await e.submit(shell(f"trap '' TERM; echo $$ > {pidfile}; sleep 60"))
        pid = int(await wait_file(pidfile))
        state, last = await store.read_job(e.domain, job)
        assert state is not None and state.status is JobStatus.RUNNING
        t0 = asyncio.get_running_loop().time()
        await store.append(job_append(decide_cancel(state, "test"), last))
        final = await e.wait(job, lambda s: s.terminal, timeout=5)
        assert asyncio.get_running_loop().time() - t0 < 2.0
    assert final.status is JobStatus.CANCELLED
    assert not pid_alive(pid)


async def test_worker_cut_off_from_nats_kills_its_jobs_then_hands_them_back(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await connect(own_nats_server.url, "test")
    js = jetstream(nc)
    await provision(js)
    store = EventStore(nc, js)
    pidfile = tmp_path / "pid"
    try:
        async with engine(own_nats_server.url, store) as e:
            e.start_dispatcher()
            e.start_worker("w1")
            job = await e.submit(shell(f"echo $$ >> {pidfile}; sleep 30"))
            first = int(await wait_file(pidfile))
            assert own_nats_server.proc is not None
            os.kill(own_nats_server.proc.pid, signal.SIGSTOP)
            try:
                for _ in range(300):  # fenced once no beat is acknowledged for FENCE_UNACKED_S (15 s)
                    if not pid_alive(first):
                        break
                    await asyncio.sleep(0.1)
                assert not pid_alive(first), "a cut-off worker kept running its job"
            finally:
                os.kill(own_nats_server.proc.pid, signal.SIGCONT)
            # Back in contact: the attempt is handed back and runs again (attempt 2).
            state = await e.wait(job, lambda s: s.attempt >= 2 and s.status is JobStatus.RUNNING, timeout=30)
            assert state.attempts[0].status == "lost"
            pids = (await wait_file(pidfile)).split()
            assert len(pids) == 2
    finally:
        await nc.close()


async def test_sigterm_drain_hands_back_jobs_past_the_grace(
    nats_server: NatsServer, store: EventStore
) -> None:
    async with engine(nats_server.url, store) as e:
        e.start_dispatcher()
        e.start_worker("w1", grace_s=0.5)
        job = await e.submit(shell("sleep 30"))
        await e.wait(job, lambda s: s.status is JobStatus.RUNNING)
        await e.stop("w1")
        state = await e.wait(job, lambda s: s.status is not JobStatus.RUNNING)
        assert state.requeues == 1 and state.attempts[0].status == "lost"
        e.start_worker("w2")
        done = await e.wait(job, lambda s: s.status is JobStatus.RUNNING and s.worker_id == "w2")
        assert done.attempt == 2
