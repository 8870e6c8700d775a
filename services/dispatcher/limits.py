"""Concurrency limits: which limits a job counts against, and which one keeps it pending.

Three limits, each counted per domain over the jobs that are dispatched or running:

- domain: the dispatcher's `--max-running-per-domain` (0 = unlimited) caps every domain;
- name: a job's `name_limit` caps the jobs with its `name` (the seeds' max_per_job);
- key: a job's `concurrency_key` caps the jobs sharing that key at its `concurrency_limit`
  (1 when only the key is given).

Every active job counts toward its domain, its name and its key (if it has one), whether or
not it sets a limit itself; a job is held back only by the limits it sets (and the domain's).
Jobs that share a key are expected to share a limit; if they do not, each job is checked
against its own limit over all jobs with the key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from events.job import JobSpec

# (kind, domain, value): ("domain", d, ""), ("name", d, <job name>), ("key", d, <concurrency key>)
LimitKey = tuple[str, str, str]

DOMAIN = "domain"
NAME = "name"
KEY = "key"


class Counts(Protocol):
    """How many jobs are dispatched or running per limit key (0 when unknown)."""

    def __getitem__(self, key: LimitKey, /) -> int: ...


@dataclass(frozen=True, slots=True)
class WithPlanned:
    """The folded counts plus the dispatches planned in this round, not yet appended."""

    folded: Counter[LimitKey]
    planned: Counter[LimitKey]

    def __getitem__(self, key: LimitKey, /) -> int:
        return self.folded[key] + self.planned[key]


@dataclass(frozen=True, slots=True)
class Block:
    """The limit that keeps a job pending, and the reason shown on the job."""

    limit: LimitKey
    reason: str


def domain_key(domain: str) -> LimitKey:
    return (DOMAIN, domain, "")


def counted(spec: JobSpec, domain: str) -> tuple[LimitKey, ...]:
    """Every limit key a dispatched or running job counts toward."""
    if spec.concurrency_key is None:
        return (domain_key(domain), (NAME, domain, spec.name))
    return (domain_key(domain), (NAME, domain, spec.name), (KEY, domain, spec.concurrency_key))


def limits(spec: JobSpec, domain: str, domain_limit: int) -> list[tuple[LimitKey, int]]:
    """The limits a job must respect, most specific first: key, name, then the domain's.

    Limits below 1 (only reachable by appending events past the API) count as 1, and a
    concurrency_limit without a key is ignored.
    """
    out: list[tuple[LimitKey, int]] = []
    if spec.concurrency_key is not None:
        out.append(((KEY, domain, spec.concurrency_key), max(1, spec.concurrency_limit or 1)))
    if spec.name_limit is not None:
        out.append(((NAME, domain, spec.name), max(1, spec.name_limit)))
    if domain_limit > 0:
        out.append((domain_key(domain), domain_limit))
    return out


def describe(limit: LimitKey, running: int, allowed: int) -> str:
    kind, domain, value = limit
    if kind == KEY:
        return f"concurrency limit: {running} of {allowed} jobs with key {value!r} running"
    if kind == NAME:
        return f"concurrency limit: {running} of {allowed} jobs named {value!r} running"
    return f"domain limit: {running} of {allowed} jobs running in {domain!r}"


def blocking(spec: JobSpec, domain: str, counts: Counts, domain_limit: int) -> Block | None:
    """The first limit (most specific first) that is full for this job, or None if it may start."""
    for limit, allowed in limits(spec, domain, domain_limit):
        running = counts[limit]
        if running >= allowed:
            return Block(limit, describe(limit, running, allowed))
    return None


def limit_reason(spec: JobSpec, domain: str, counts: Counts, domain_limit: int) -> str | None:
    """Why a concurrency limit keeps this job pending, or None if none does."""
    block = blocking(spec, domain, counts, domain_limit)
    return block.reason if block else None
