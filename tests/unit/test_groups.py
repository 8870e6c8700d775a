"""The worker's record of its jobs' process groups, with real processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from services.worker.groups import GroupLedger


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def test_the_next_run_kills_what_the_last_one_left_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "w1.groups"
    left = subprocess.Popen(["sleep", "30"], start_new_session=True)
    done = subprocess.Popen(["sleep", "30"], start_new_session=True)
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        first = GroupLedger(path)
        first.started(left.pid)
        first.started(done.pid)
        first.ended(done.pid)  # finished normally: no longer ours to kill
        # A recorded pid whose process is not the one recorded (reused): never touched.
        path.write_text(path.read_text() + f"{other.pid} 1\n")
        assert GroupLedger(path).kill_leftovers() == 1
        for _ in range(50):
            if not alive(left):
                break
            time.sleep(0.05)
        assert not alive(left) and alive(done) and alive(other)
        assert path.read_text() == ""  # what is left is the new run's
    finally:
        for proc in (left, done, other):
            proc.kill()
            proc.wait()
