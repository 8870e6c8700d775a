"""Which live worker takes a job: eligibility, least-loaded choice, and why nobody can."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from events.job import JobSpec


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What placement needs to know of a live worker."""

    id: str
    tags: frozenset[str]
    allowed_users: frozenset[str]
    executors: frozenset[str]
    max_concurrency: int
    load: int

    @property
    def free(self) -> int:
        return self.max_concurrency - self.load


def eligible(spec: JobSpec, worker: WorkerView) -> bool:
    """Job tags are a subset of the worker's; its user allowed (if the worker restricts); executor known."""
    return (
        worker.tags.issuperset(spec.tags)
        and (not worker.allowed_users or (spec.user is not None and spec.user in worker.allowed_users))
        and spec.executor.__struct_config__.tag in worker.executors
    )


def choose(spec: JobSpec, workers: Iterable[WorkerView]) -> WorkerView | None:
    """The eligible worker with a free slot that is least loaded, relative to its size."""
    best: WorkerView | None = None
    best_key: tuple[float, int, str] | None = None
    for worker in workers:
        if worker.free <= 0 or not eligible(spec, worker):
            continue
        key = (worker.load / worker.max_concurrency, worker.load, worker.id)
        if best_key is None or key < best_key:
            best, best_key = worker, key
    return best


def unplaceable(
    spec: JobSpec, workers: Iterable[WorkerView], withheld: Iterable[tuple[WorkerView, str]] = ()
) -> str | None:
    """Why no live worker could ever take this job, or None if one could (given a free slot).

    `withheld`: workers that are up but drained or disabled by an operator, with that state;
    those that would match are named in the reason."""
    reason = _unplaceable(spec, workers)
    if reason is None:
        return None
    named = [f"{w.id} ({state})" for w, state in withheld if eligible(spec, w)]
    if named:
        noun = "workers" if len(named) > 1 else "worker"
        reason += f"; matching but taking no new jobs: {noun} {', '.join(named)}"
    return reason


def _unplaceable(spec: JobSpec, workers: Iterable[WorkerView]) -> str | None:
    pool = list(workers)
    if not pool:
        return "no live worker in this domain"
    if any(eligible(spec, w) for w in pool):
        return None
    executor = str(spec.executor.__struct_config__.tag)
    problems = []
    if not any(w.tags.issuperset(spec.tags) for w in pool):
        problems.append(f"has tags {sorted(spec.tags)}")
    if not any(not w.allowed_users or spec.user in w.allowed_users for w in pool):
        problems.append(f"accepts user {spec.user!r}")
    if not any(executor in w.executors for w in pool):
        problems.append(f"supports executor {executor!r}")
    if not problems:
        return "no single live worker matches tags, user and executor together"
    return "no live worker " + " or ".join(problems)
