"""Shell jobs: the script runs under /bin/sh -c, or bash when the spec asks for it."""

from __future__ import annotations

import shutil

from events.job import Outcome, ShellExecutor
from services.worker.executors.base import RunContext, run_child


async def run_shell(ctx: RunContext, executor: ShellExecutor) -> Outcome:
    shell = "/bin/sh" if executor.shell == "sh" else (shutil.which("bash") or "/bin/bash")
    return await run_child(ctx, [shell, "-c", executor.script])
