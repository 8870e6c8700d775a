"""End to end through the REST API with real processes: the lifecycle and its failure modes."""

from __future__ import annotations

import signal
import time
from collections import Counter

import httpx

from tests.e2e.system import System, pid_alive, shell_job

pytestmark = __import__("pytest").mark.slow


def test_300_jobs_with_two_workers_all_succeed_and_logs_are_readable(system: System) -> None:
    jobs = [shell_job(f"echo line-{i}; echo err-{i} >&2", name=f"bulk-{i % 7}") for i in range(150)]
    jobs += [
        {"name": "call", "executor": {"type": "python", "callable": "operator:add", "args": [i, 1]}}
        for i in range(150)
    ]
    with system.client() as c:
        r = c.post("/jobs/batch", json={"jobs": jobs})
        assert r.status_code == 201, r.text
        ids = r.json()["ids"]
        assert len(ids) == 300 and r.json()["created"] == 300
    done = system.wait_terminal(ids, timeout=120)
    assert Counter(j["status"] for j in done.values()) == {"succeeded": 300}
    workers = Counter(j["worker_id"] for j in done.values())
    assert set(workers) == {"w1", "w2"}
    with system.client() as c:
        logs = c.get(f"/jobs/{ids[3]}/logs").json()["items"]
        assert [(line["stream"], line["line"]) for line in sorted(logs, key=lambda x: x["seq"])] in (
            [("stdout", "line-3"), ("stderr", "err-3")],
            [("stderr", "err-3"), ("stdout", "line-3")],
        )
        assert c.get(f"/jobs/{ids[200]}").json()["result"] == 51  # operator.add(50, 1)


def test_cancel_of_running_sleep_ends_fast_and_kills_the_process(system: System) -> None:
    with system.client() as c:
        job = c.post("/jobs", json=shell_job("echo pid=$$; exec sleep 60")).json()
        system.wait(
            lambda: any(
                line["line"].startswith("pid=") for line in c.get(f"/jobs/{job['id']}/logs").json()["items"]
            )
        )
        pid = int(c.get(f"/jobs/{job['id']}/logs").json()["items"][0]["line"].split("=")[1])
        assert pid_alive(pid)
        t0 = time.monotonic()
        r = c.post(f"/jobs/{job['id']}/cancel", json={"reason": "test"})
        assert r.status_code == 200, r.text
    final = system.wait_terminal([job["id"]], timeout=10)[job["id"]]
    assert final["status"] == "cancelled"
    assert time.monotonic() - t0 < 3.0
    system.wait(lambda: not pid_alive(pid), timeout=2, what="process gone")


def test_cancel_pending_job_is_immediate(system: System) -> None:
    with system.client() as c:
        job = c.post("/jobs", json=shell_job("true", tags=["nowhere"])).json()
        r = c.post(f"/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = c.post(f"/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_timeout_kills_and_marks_timed_out(system: System) -> None:
    with system.client() as c:
        job = c.post("/jobs", json=shell_job("sleep 60", timeout_s=1)).json()
    final = system.wait_terminal([job["id"]], timeout=15)[job["id"]]
    assert final["status"] == "timed_out"
    assert "timed out" in final["error"]


def test_failure_is_retried_with_backoff_then_fails(system: System) -> None:
    with system.client() as c:
        job = c.post("/jobs", json=shell_job("exit 3", max_retries=2, retry_backoff_s=0.2)).json()
    final = system.wait_terminal([job["id"]], timeout=20)[job["id"]]
    assert final["status"] == "failed" and final["exit_code"] == 3
    assert [a["status"] for a in final["attempts"]] == ["failed", "failed", "failed"]


def test_completion_criteria(system: System) -> None:
    with system.client() as c:
        ok = c.post(
            "/jobs",
            json=shell_job("echo ALL GOOD; exit 2", completion={"exit_codes": [2], "stdout_match": "GOOD"}),
        ).json()
        bad = c.post(
            "/jobs", json=shell_job("echo ERROR here", completion={"stdout_not_match": "ERROR"})
        ).json()
    done = system.wait_terminal([ok["id"], bad["id"]])
    assert done[ok["id"]]["status"] == "succeeded"
    assert done[bad["id"]]["status"] == "failed" and "forbidden pattern" in done[bad["id"]]["error"]


def test_unplaceable_job_stays_pending_with_a_reason(system: System) -> None:
    with system.client() as c:
        job = c.post("/jobs", json=shell_job("true", tags=["gpu"])).json()
        system.wait(lambda: c.get(f"/jobs/{job['id']}").json()["pending_reason"] is not None)
        seen = c.get(f"/jobs/{job['id']}").json()
        assert seen["status"] == "pending" and "tags ['gpu']" in seen["pending_reason"]
    system.start_worker("gpu-1", "--tags", "gpu")
    assert system.wait_terminal([job["id"]])[job["id"]]["worker_id"] == "gpu-1"


def test_kill_9_of_a_worker_moves_its_jobs_to_the_other(system: System) -> None:
    with system.client() as c:
        jobs = [c.post("/jobs", json=shell_job("sleep 2; echo done")).json()["id"] for _ in range(8)]
        system.wait(lambda: all(c.get(f"/jobs/{j}").json()["status"] == "running" for j in jobs), timeout=20)
    system.stop("w1", signal.SIGKILL)
    done = system.wait_terminal(jobs, timeout=60)
    assert Counter(j["status"] for j in done.values()) == {"succeeded": 8}
    assert all(j["worker_id"] == "w2" for j in done.values())
    with system.client() as c:
        for job_id in jobs:
            events = c.get(f"/jobs/{job_id}/events").json()
            terminal = [e for e in events if e["type"] in ("succeeded", "failed", "timed_out", "cancelled")]
            assert len(terminal) == 1 and events[-1]["type"] == terminal[0]["type"]
        w1 = c.get("/workers/w1").json()
        assert w1["status"] == "offline"


def test_dispatcher_restart_loses_nothing_and_starts_nothing_twice(system: System) -> None:
    with system.client() as c:
        first = c.post("/jobs/batch", json={"jobs": [shell_job("sleep 0.2") for _ in range(20)]}).json()[
            "ids"
        ]
        system.stop("dispatcher", signal.SIGKILL)
        second = c.post("/jobs/batch", json={"jobs": [shell_job("true") for _ in range(20)]}).json()["ids"]
        system.start_dispatcher("dispatcher-2")
        done = system.wait_terminal(first + second, timeout=60)
        assert Counter(j["status"] for j in done.values()) == {"succeeded": 40}
        for job_id in first + second:
            types = [e["type"] for e in c.get(f"/jobs/{job_id}/events").json()]
            assert types.count("started") == 1 and types.count("dispatched") == 1, types


def test_idempotency_key_gives_one_job(system: System) -> None:
    with system.client() as c:
        a = c.post("/jobs", json=shell_job("true"), headers={"Idempotency-Key": "abc-1"})
        b = c.post("/jobs", json=shell_job("true"), headers={"Idempotency-Key": "abc-1"})
        assert (a.status_code, b.status_code) == (201, 200)
        assert a.json()["id"] == b.json()["id"]
        listed = c.get("/jobs", params={"limit": 500}).json()["items"]
        assert sum(1 for j in listed if j["id"] == a.json()["id"]) == 1


def test_retry_of_finished_job_is_a_new_linked_job(system: System) -> None:
    with system.client() as c:
        job = c.post("/jobs", json=shell_job("exit 1")).json()
        system.wait_terminal([job["id"]])
        again = c.post(f"/jobs/{job['id']}/retry")
        assert again.status_code == 201 and again.json()["retry_of"] == job["id"]
        running = c.post("/jobs", json=shell_job("sleep 30")).json()
        refused = c.post(f"/jobs/{running['id']}/retry")
        assert refused.status_code == 400 and "only finished jobs" in refused.json()["detail"]


def test_sigterm_drains_running_jobs_within_grace(system: System) -> None:
    system.stop("w2")
    with system.client() as c:
        job = c.post("/jobs", json=shell_job("sleep 1; echo finished")).json()
        system.wait(lambda: c.get(f"/jobs/{job['id']}").json()["status"] == "running")
    assert system.stop("w1") == 0
    final = system.job(job["id"])
    assert final["status"] == "succeeded"
    assert system.workers() and {w["id"]: w["status"] for w in system.workers()}["w1"] == "stopped"


def test_auth_is_required(system: System) -> None:
    assert httpx.get(f"{system.api_url}/api/v1/jobs").status_code == 401
    with system.client(token="wrong") as c:
        assert c.get("/jobs").status_code == 401
    assert httpx.get(f"{system.api_url}/health").status_code == 200
