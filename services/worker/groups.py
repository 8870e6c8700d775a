"""The process groups of running jobs, on disk, so a worker's next run can kill what a killed
run left behind.

Jobs run in their own sessions (so that cancel and timeout reach all their children), which
also means they outlive a worker killed with SIGKILL. The dispatcher gives such a run's
attempts to the new run at once (they are its incarnation's), so the old processes must not
keep running beside the new attempt: each group is recorded with its leader's start time
(a reused pid is never mistaken for it) and killed when the worker id starts again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def default_path(domain: str, worker_id: str) -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"jobstream-{os.getuid()}"
    return base / f"{domain}.{worker_id}.groups"


class GroupLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.live: dict[int, str] = {}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{pgid} {start}\n" for pgid, start in self.live.items()))
        tmp.replace(self.path)  # whole or not at all, also when we are killed mid-write

    def started(self, pgid: int) -> None:
        start = _start_time(pgid)
        if start is not None:
            self.live[pgid] = start
            self._write()

    def ended(self, pgid: int) -> None:
        if self.live.pop(pgid, None) is not None:
            self._write()

    def kill_leftovers(self) -> int:
        """SIGKILL the groups an earlier run recorded that still run; returns how many."""
        killed = 0
        with contextlib.suppress(FileNotFoundError):
            for line in self.path.read_text().splitlines():
                pgid_text, _, start = line.partition(" ")
                if not pgid_text.isdigit():
                    continue
                pgid = int(pgid_text)
                if _start_time(pgid) == start:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)
                        killed += 1
        self.live = {}
        self._write()
        if killed:
            log.warning("killed %d job process groups an earlier run of this worker left behind", killed)
        return killed
