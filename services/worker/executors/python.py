"""Python jobs: a script or module under the worker's interpreter, or a callable run in-process."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import time
import traceback
from collections.abc import Callable
from functools import cache
from typing import Any

import msgspec

from events.job import Outcome, PythonExecutor
from services.worker.executors.base import RunContext, run_child

MAX_RESULT_BYTES = 64 * 1024


class CallableError(ValueError):
    pass


@cache
def resolve(target: str) -> Callable[..., Any]:
    """Import "pkg.mod:func" (or "pkg.mod:Class.method") once per worker."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise CallableError(f"callable {target!r} must look like 'package.module:function'")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise CallableError(f"{target!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    """Keep the result if it is small JSON; otherwise say what it was."""
    try:
        data = msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError):
        return {"repr": repr(value)[:1000]}
    if len(data) > MAX_RESULT_BYTES:
        return {"truncated": True, "bytes": len(data)}
    return msgspec.json.decode(data)


async def run_callable(ctx: RunContext, executor: PythonExecutor) -> Outcome:
    assert executor.callable is not None
    started = time.monotonic()
    try:
        func = resolve(executor.callable)
    except Exception as exc:
        return Outcome("failed", error=f"cannot load callable {executor.callable!r}: {exc}")
    if inspect.iscoroutinefunction(func):
        work: asyncio.Future[Any] = asyncio.ensure_future(func(*executor.args, **executor.kwargs))
    else:
        # A synchronous callable runs in a thread so the worker keeps heartbeating.
        work = asyncio.ensure_future(asyncio.to_thread(func, *executor.args, **executor.kwargs))
    cancel = asyncio.ensure_future(ctx.cancel.wait())
    try:
        done, _ = await asyncio.wait(
            {work, cancel}, timeout=ctx.spec.timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        cancel.cancel()
    elapsed = time.monotonic() - started
    if work not in done:
        # A thread cannot be killed; it is abandoned and its result ignored.
        work.cancel()
        if ctx.cancel.is_set():
            return Outcome("cancelled", error="cancelled", duration_s=elapsed)
        return Outcome("timed_out", error=f"timed out after {ctx.spec.timeout_s}s", duration_s=elapsed)
    error = work.exception()
    if error is not None:
        for line in traceback.format_exception(error):
            for part in line.rstrip("\n").split("\n"):
                await ctx.sink.write("stderr", part)
        return Outcome("failed", error=f"{type(error).__name__}: {error}", duration_s=elapsed)
    return Outcome("succeeded", exit_code=0, duration_s=elapsed, result=_jsonable(work.result()))


async def run_python(ctx: RunContext, executor: PythonExecutor) -> Outcome:
    args = [str(arg) for arg in executor.args]
    if executor.callable:
        return await run_callable(ctx, executor)
    if executor.module:
        return await run_child(ctx, [sys.executable, "-u", "-m", executor.module, *args])
    if executor.script is not None:
        return await run_child(ctx, [sys.executable, "-u", "-c", executor.script, *args])
    return Outcome("failed", error="python executor needs one of script, module or callable")
