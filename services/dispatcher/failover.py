"""Failover, as pure decisions: which workers are gone, and which attempts no live run holds.

Three ways an attempt loses its process, each with its own evidence:
- the worker is silent past the TTL (it went offline: every attempt it held goes back);
- the worker id registered again from a new process (an incarnation): what the earlier
  run held died with it, at once, without waiting for any TTL;
- the worker beats, but its beats do not list the attempt for a grace period: the worker
  dropped it (an append that timed out but landed, a crash of one task). Its beats are
  the worker's own word on what it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A beat lists an attempt from the moment its assignment is accepted; a fresh start can miss
# one or two beats (2 s apart), never five.
UNREPORTED_RUNNING_GRACE_S = 10.0
# A dispatched attempt may sit in the worker's consumer until it is pulled, or redelivered
# after the consumer's ack wait (30 s) when a run of the worker took it and died.
UNREPORTED_DISPATCHED_GRACE_S = 45.0


@dataclass(frozen=True, slots=True)
class Liveness:
    domain: str
    worker_id: str
    active: bool
    last_beat: float  # monotonic time the last heartbeat arrived (or our start, as grace)


@dataclass(frozen=True, slots=True)
class Held:
    """An attempt the log says a worker holds (dispatched to it, or running on it)."""

    domain: str
    job_id: str
    worker_id: str
    attempt: int
    running: bool
    incarnation: str  # of the run that started it ("" until started)
    seq: int  # the job's last event: the fence of a requeue


@dataclass(frozen=True, slots=True)
class Run:
    """The current run (process) of an active worker id, as its last `registered` says."""

    incarnation: str
    registered_seq: int


def silent(workers: Iterable[Liveness], now: float, ttl_s: float) -> list[Liveness]:
    return [w for w in workers if w.active and now - w.last_beat > ttl_s]


def held_by_gone_runs(held: Iterable[Held], runs: Mapping[tuple[str, str], Run]) -> list[tuple[Held, str]]:
    """Attempts an earlier run of their worker id holds, with the reason to requeue them.

    Running: started by another incarnation. Dispatched: assigned before the current run
    registered (the run that was given it is gone; the new run may also take it from its
    consumer first, and then the fenced requeue is refused, which is fine)."""
    out = []
    for h in held:
        run = runs.get((h.domain, h.worker_id))
        if run is None or not run.incarnation:
            continue  # offline/stopped workers are failed over as such; old logs have no incarnation
        if h.running and h.incarnation != run.incarnation:
            gone = f"worker {h.worker_id} restarted; the run that started attempt {h.attempt} is gone"
            out.append((h, gone))
        elif not h.running and h.seq < run.registered_seq:
            out.append((h, f"worker {h.worker_id} restarted after attempt {h.attempt} was dispatched to it"))
    return out


def unreported(
    held: Iterable[Held],
    missing_since: Mapping[tuple[str, str], tuple[int, float]],
    now: float,
    running_grace_s: float = UNREPORTED_RUNNING_GRACE_S,
    dispatched_grace_s: float = UNREPORTED_DISPATCHED_GRACE_S,
) -> list[tuple[Held, str]]:
    """Attempts the worker's beats have left out for longer than the grace, with the reason.

    `missing_since` maps (domain, job) to (attempt, first beat that left it out)."""
    out = []
    for h in held:
        seen = missing_since.get((h.domain, h.job_id))
        if seen is None or seen[0] != h.attempt:
            continue
        waited = now - seen[1]
        if waited > (running_grace_s if h.running else dispatched_grace_s):
            what = "running" if h.running else "dispatched"
            why = f"worker {h.worker_id} does not report {what} attempt {h.attempt} for {waited:.0f}s"
            out.append((h, why))
    return out
