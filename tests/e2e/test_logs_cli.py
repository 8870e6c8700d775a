"""Output is never silently lost: 100,000 lines through the API pages, `logs` and `submit --wait`."""

from __future__ import annotations

import re
import time

import pytest

from services.cli.client import EXIT_WAIT_TIMEOUT
from tests.e2e.system import System
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.slow

N = 100_000


def test_a_hundred_thousand_lines_every_way(system: System) -> None:
    expected = [str(i) for i in range(1, N + 1)]
    t0 = time.monotonic()
    waited = cli(system, "submit", "--shell", f"seq 1 {N}", "--wait")
    assert waited.returncode == 0, waited.stderr[-2000:]
    assert waited.stdout.splitlines() == expected
    job_id = waited.stderr.split()[1]
    assert "succeeded" in waited.stderr
    t1 = time.monotonic()

    with system.client() as c:
        lines: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 30_000, **({"cursor": cursor} if cursor else {})}
            page = c.get(f"/jobs/{job_id}/logs", params=params).json()
            lines.extend(x["line"] for x in page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert lines == expected and pages == 4

    everything = cli(system, "logs", job_id)
    assert everything.returncode == 0 and everything.stdout.splitlines() == expected
    assert cli(system, "logs", job_id, "--tail", "5").stdout.splitlines() == expected[-5:]
    assert cli(system, "logs", job_id, "--head", "5").stdout.splitlines() == expected[:5]
    assert cli(system, "logs", job_id, "--head", "10001").stdout.splitlines() == expected[:10_001]
    assert time.monotonic() - t1 < 60 and t1 - t0 < 60


def test_retries_are_marked_and_a_callable_result_printed(system: System) -> None:
    retry = ("--max-retries", "1", "--retry-backoff", "0.1")
    flaky = cli(system, "submit", "--shell", "echo try; exit 3", *retry, "--wait")
    assert flaky.returncode == 1
    assert flaky.stdout.splitlines() == ["try", "try"]
    assert "--- attempt 2 (retry) ---" in flaky.stderr
    product = cli(system, "submit", "--callable", "operator:mul", "--arg", "6", "--arg", "7", "--wait")
    assert product.returncode == 0, product.stderr
    assert product.stdout.strip().splitlines()[-1] == "42"


def test_a_job_nobody_can_take_says_why_and_times_out(system: System) -> None:
    t0 = time.monotonic()
    out = cli(system, "submit", "--shell", "echo never", "--tag", "nobody-has-this", "--wait",
              "--wait-timeout", "3")  # fmt: skip
    assert out.returncode == EXIT_WAIT_TIMEOUT, out.stderr
    said = [line for line in out.stderr.splitlines() if re.match(r"job \S+ pending: \S", line)]
    assert len(said) == 1, out.stderr  # said once, as soon as known, and not repeated
    assert "after 3s" in out.stderr and "jobstream logs -f" in out.stderr
    assert time.monotonic() - t0 < 15
