"""Executors: one module per way of running a job, all returning an Outcome."""

from __future__ import annotations

from events.job import Outcome, PythonExecutor, ShellExecutor
from services.worker.executors.base import RunContext
from services.worker.executors.python import run_python
from services.worker.executors.shell import run_shell

SUPPORTED = ("shell", "python")


async def execute(ctx: RunContext) -> Outcome:
    executor = ctx.spec.executor
    if isinstance(executor, ShellExecutor):
        return await run_shell(ctx, executor)
    if isinstance(executor, PythonExecutor):
        return await run_python(ctx, executor)
    return Outcome("failed", error=f"this worker cannot run executor {type(executor).__name__}")
