"""How supervisors start child processes: out of the terminal's process group, but tied to us."""

from __future__ import annotations

import ctypes
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """On Linux, the child gets SIGTERM if its supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def child_kwargs() -> dict[str, Any]:
    """Ctrl-C reaches only the supervisor, which then stops children in the right order."""
    return {"start_new_session": True, "preexec_fn": _die_with_parent}
