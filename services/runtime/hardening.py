"""Keep a service's memory and environment from the jobs that run as the same OS user."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
SERVICE_COMMANDS = frozenset({"up", "api", "dispatcher", "scheduler", "broker-auth", "projector", "worker"})


def forbid_peeking() -> bool:
    """Mark this process not dumpable (Linux): a job of the same user can then no longer read
    /proc/<pid>/environ (where NATS_URL holds the service login) or ptrace it. The flag passes
    to children only until they exec, so jobs are unaffected. False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
        return False
    return True


def dumpable() -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
