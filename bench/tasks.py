"""The no-op work jobstream runs, so the benchmark measures the job system, not the job."""

from __future__ import annotations


def noop() -> None:
    return None
