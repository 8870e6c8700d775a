"""What every executor gets, and the shared path for executors that run a child process."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from events.job import JobSpec, Outcome
from services.worker.completion import StdoutWatch, judge
from services.worker.groups import GroupLedger
from services.worker.logsink import LogSink
from services.worker.process import run_process

# Credentials of the worker itself must never leak into the jobs it runs: these by name, every
# NATS_* connection variable (NATS_URL holds the service login), and any name that marks a secret.
SECRET_ENV = (
    "WORKER_DOMAIN_TOKEN",
    "API_TOKEN",
    "ADMIN_TOKEN",
    "JOBSTREAM_TOKEN",
    "NATS_URL",
    "NATS_SERVICE_PASSWORD",
)
SECRET_PREFIXES = ("NATS_",)
_SECRET_WORD = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|(^|_)PW?D($|_)|(^|_)AUTH($|_)|"
    r"(^|_)(API|ACCESS|PRIVATE|SECRET|SIGNING|ENCRYPTION|SSH|CLIENT)_?KEY|(^|_)KEY($|_)",
    re.IGNORECASE,
)


def is_secret_env(name: str) -> bool:
    """Whether the worker's own variable `name` may hold a credential, so a job must not get it."""
    upper = name.upper()
    return upper in SECRET_ENV or upper.startswith(SECRET_PREFIXES) or bool(_SECRET_WORD.search(upper))


def worker_env_for_jobs(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The part of the worker's environment a job may inherit."""
    source = dict(os.environ) if environ is None else environ
    return {k: v for k, v in source.items() if not is_secret_env(k)}


@dataclass
class RunContext:
    job_id: str
    domain: str
    attempt: int
    spec: JobSpec
    sink: LogSink
    cancel: asyncio.Event
    groups: GroupLedger | None = None  # where the job's process group is recorded


def job_env(ctx: RunContext) -> dict[str, str]:
    """Every job's environment (the one place that builds it): the worker's own minus anything
    credential-like, then the job's own `spec.env` (the user's choice, kept as given)."""
    env = worker_env_for_jobs()
    env.update(ctx.spec.env)
    env["JOBSTREAM_JOB_ID"] = ctx.job_id
    env["JOBSTREAM_ATTEMPT"] = str(ctx.attempt)
    env["JOBSTREAM_DOMAIN"] = ctx.domain
    if ctx.spec.user:
        env["JOBSTREAM_USER"] = ctx.spec.user
    return env


async def run_child(ctx: RunContext, argv: list[str]) -> Outcome:
    """Run argv as the job's process and turn what happened into an Outcome."""
    spec = ctx.spec
    scratch: str | None = None
    cwd = spec.cwd
    if cwd is None:
        scratch = tempfile.mkdtemp(prefix=f"jobstream-{ctx.job_id}-")
        cwd = scratch
    elif not os.path.isdir(cwd):
        return Outcome("failed", error=f"cwd {cwd!r} does not exist on this worker")
    watch = StdoutWatch(spec.completion)
    try:
        result = await run_process(
            argv,
            env=job_env(ctx),
            cwd=cwd,
            timeout_s=spec.timeout_s,
            cancel=ctx.cancel,
            sink=ctx.sink,
            watch=watch,
            groups=ctx.groups,
        )
    except OSError as exc:
        return Outcome("failed", error=f"could not start {argv[0]!r}: {exc}")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if result.cancelled:
        return Outcome("cancelled", result.exit_code, "cancelled", result.duration_s)
    if result.timed_out:
        return Outcome("timed_out", None, f"timed out after {spec.timeout_s}s", result.duration_s)
    assert result.exit_code is not None
    reason = judge(spec.completion, result.exit_code, watch)
    if reason is None:
        return Outcome("succeeded", result.exit_code, "", result.duration_s)
    return Outcome("failed", result.exit_code, reason, result.duration_s)
