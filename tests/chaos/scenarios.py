"""The faults of the chaos suite, one function each, and the run that checks the fleet after one.

Each scenario runs under the same bounded load (jobs with an Idempotency-Key, retried until
answered, writing a ledger outside NATS) and two schedules every 1-2 s (overlap `skip` and
`allow`); afterwards `check` asserts what must hold, and the fixture audits the log."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.streams import EVENTS_STREAM, HEARTBEATS_STREAM, LEASES_BUCKET
from tests.chaos.fleet import Fleet, Load, job_events, ledger_overlaps
from tests.e2e.system import TERMINAL

RESUME_WITHIN_S = 15.0
LEASES_STREAM = f"KV_{LEASES_BUCKET}"


@dataclass
class Report:
    scenario: str
    longest_refused_s: float
    recovered_s: float  # from the fault's end until a job submitted then was dispatched
    reexecuted: int  # attempts beyond the first, over all jobs

    def line(self) -> str:
        return (
            f"{self.scenario}: longest refused submits {self.longest_refused_s:.1f}s, "
            f"recovered in {self.recovered_s:.1f}s, {self.reexecuted} re-executions"
        )


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


# ---- faults: each returns when it is over (the cluster healed) ---------------------------


def kill_leader_of(stream: str, down_s: float = 4.0) -> Callable[[Fleet], None]:
    def fault(fleet: Fleet) -> None:
        node = fleet.node(fleet.leader(stream))
        node.kill()
        time.sleep(down_s)
        node.start(keep_logins=True)

    return fault


def repeatedly(fault: Callable[[Fleet], None], times: int, gap_s: float) -> Callable[[Fleet], None]:
    def run(fleet: Fleet) -> None:
        for i in range(times):
            fault(fleet)
            if i < times - 1:
                time.sleep(gap_s)

    return run


def one_after_another(*faults: Callable[[Fleet], None]) -> Callable[[Fleet], None]:
    def run(fleet: Fleet) -> None:
        for fault in faults:
            fault(fleet)

    return run


def pause_leader(stream: str = EVENTS_STREAM, paused_s: float = 12.0) -> Callable[[Fleet], None]:
    """SIGSTOP past the leader's quorum timeout (10 s): a stale leader comes back."""

    def fault(fleet: Fleet) -> None:
        node = fleet.node(fleet.leader(stream))
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(paused_s)
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)

    return fault


def rolling_restart(fleet: Fleet) -> None:
    """Each node in turn: lame duck (SIGUSR2), stopped, started, healthy again."""
    for server in fleet.servers:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGUSR2)
        server.stop(timeout=30)
        server.start(keep_logins=True)
        fleet.wait_healthy(server)


def kill_all_nodes(fleet: Fleet, down_s: float = 5.0) -> None:
    for server in fleet.servers:
        server.kill()
    time.sleep(down_s)
    for server in fleet.servers:
        server.start(keep_logins=True)


def kill_each_service(fleet: Fleet) -> None:
    """SIGKILL one process of each kind, then start it again under the same name."""
    for name in ("dispatcher-a", "scheduler-a", "w1", "api"):
        fleet.stop(name, signal.SIGKILL)
        time.sleep(2.0)  # past the longest job sleep, so the ledger can bound a killed one
        if name == "api":
            fleet.start_api()
        elif name.startswith("dispatcher"):
            fleet.start_dispatcher(name)
        elif name.startswith("scheduler"):
            fleet.start_scheduler(name)
        else:
            fleet.start_worker(name, "--max-concurrency", "3", "--grace-s", "2")


def kill_everything(fleet: Fleet) -> None:
    """A machine crash, minus the disk: every process, nodes included; then all started again."""
    names = list(fleet.procs)
    for name in names:
        fleet.stop(name, signal.SIGKILL)
    for server in fleet.servers:
        server.kill()
    for server in fleet.servers:
        server.start(keep_logins=True)
    fleet.start_api()
    for name in names:
        if name.startswith("dispatcher"):
            fleet.start_dispatcher(name)
        elif name.startswith("scheduler"):
            fleet.start_scheduler(name)
        elif name.startswith("w"):
            fleet.start_worker(name, "--max-concurrency", "3", "--grace-s", "2")


FAULTS: dict[str, Callable[[Fleet], None]] = {
    "events-leader-killed-repeatedly": repeatedly(kill_leader_of(EVENTS_STREAM), times=4, gap_s=6.0),
    "lease-then-heartbeats-leader-killed": one_after_another(
        kill_leader_of(LEASES_STREAM), kill_leader_of(HEARTBEATS_STREAM)
    ),
    "rolling-restart-lame-duck": rolling_restart,
    "events-leader-paused": pause_leader(),
    "all-nodes-killed": kill_all_nodes,
    "each-service-killed": kill_each_service,
    "everything-killed": kill_everything,
}


def partition_leader(stream: str = EVENTS_STREAM, cut_s: float = 20.0) -> Callable[[Fleet], None]:
    """Cut the node leading `stream` off from the other nodes and from every client, silently."""

    def fault(fleet: Fleet) -> None:
        assert fleet.net is not None, "a partition needs the fleet with proxies"
        name = fleet.leader(stream)
        links = fleet.net.node_links(int(name.removeprefix("n")) - 1)
        fleet.net.proxies.cut(links)
        time.sleep(cut_s)
        fleet.net.proxies.heal(links)

    return fault


def partition_worker(cut_s: float = 30.0) -> Callable[[Fleet], None]:
    """Cut one worker off from every server (and so from the dispatcher), silently: it must stop
    its jobs before the dispatcher gives them to another worker (the ledger shows it)."""

    def fault(fleet: Fleet) -> None:
        assert fleet.net is not None, "a partition needs the fleet with proxies"
        links = list(fleet.net.worker_clients)
        fleet.net.proxies.cut(links)
        time.sleep(cut_s)
        fleet.net.proxies.heal(links)

    return fault


PARTITIONS: dict[str, Callable[[Fleet], None]] = {
    "events-leader-partitioned": partition_leader(),
    "worker-partitioned": partition_worker(),
}


# ---- the run ----------------------------------------------------------------------------


def schedules(fleet: Fleet) -> list[str]:
    ids = []
    with fleet.client() as c:
        for name, every, overlap in (("chaos-skip", 2, "skip"), ("chaos-allow", 1, "allow")):
            body: dict[str, Any] = {
                "name": name, "interval_s": every, "overlap_policy": overlap,
                "job": {"name": name, "executor": {"type": "shell", "script": "sleep 0.5"}},
            }  # fmt: skip
            r = c.post("/schedules", json=body)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    return ids


def pause(fleet: Fleet, schedule_ids: list[str]) -> None:
    with fleet.client() as c:
        for sid in schedule_ids:
            for _ in range(50):
                if c.post(f"/schedules/{sid}/pause").status_code == 200:
                    break
                time.sleep(0.5)


def run(fleet: Fleet, name: str, fault: Callable[[Fleet], None], jobs: int = 60) -> Report:
    load = Load(fleet, fleet.tmp / "ledger", jobs=jobs)
    sids = schedules(fleet)
    load.start(rate_per_s=2.0)
    time.sleep(5)
    fault(fleet)
    healed_at = time.monotonic()
    load.join(timeout=180)
    pause(fleet, sids)
    recovered = check(fleet, load, healed_at)
    reexecuted = 0
    for job_id in {j for seen in load.keys.values() for j in seen}:
        reexecuted += max(0, sum(1 for e in job_events(fleet, job_id) if e["type"] == "started") - 1)
    longest = max((b - a for a, b in load.refused), default=0.0)
    return Report(name, longest, recovered, reexecuted)


def check(fleet: Fleet, load: Load, healed_at: float) -> float:
    """What must hold after a fault; returns how long dispatch took to resume after it."""
    assert not load.errors, load.errors[:5]
    assert all(len(seen) == 1 for seen in load.keys.values()), "one Idempotency-Key gave two jobs"
    ids = {job for seen in load.keys.values() for job in seen}
    assert len(ids) == load.jobs
    done = fleet.wait_terminal(ids, timeout=120)
    for job_id, job in done.items():
        # A cancelled job may also have finished first; nothing else may end any other way.
        allowed = {"succeeded", "cancelled"} if job_id in load.cancelled else {"succeeded"}
        assert job["status"] in allowed, (job_id, job["status"], job.get("error"))
    recovered = 0.0
    for job_id in ids:
        events = job_events(fleet, job_id)
        types = [e["type"] for e in events]
        assert types[0] == "submitted" and types[-1] in TERMINAL, types
        assert sum(t in TERMINAL for t in types) == 1, types
        starts = Counter(e["attempt"] for e in events if e["type"] == "started")
        assert all(n == 1 for n in starts.values()), f"two starts of one attempt: {types}"
        dispatched = next((e for e in events if e["type"] == "dispatched"), None)
        if load.submitted_at[job_id] > healed_at and dispatched is not None:  # (None: cancelled first)
            recovered = max(recovered, _seconds(events[0]["at"], dispatched["at"]))
    assert recovered <= RESUME_WITHIN_S, f"dispatch took {recovered:.1f}s to resume after the fault"
    assert ledger_overlaps(load.ledger) == []
    deadline = time.monotonic() + 30
    while len(set(fleet.node_states().values())) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    states = fleet.node_states()
    assert len(states) == 3 and len(set(states.values())) == 1, f"the nodes disagree on EVENTS: {states}"
    return recovered
