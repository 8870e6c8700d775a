"""The API client half of the CLI: submit, jobs, logs, workers. Human tables, or `--json`."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli import render
from services.cli.client import EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_WAIT_TIMEOUT, Client, ClientError

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
WAIT_POLL_S = 0.25

Url = Annotated[str | None, typer.Option("--url", envvar="JOBSTREAM_URL", help="API base URL")]
Token = Annotated[str | None, typer.Option("--token", envvar="JOBSTREAM_TOKEN", help="bearer token")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
# Time travel: the API folds the aggregate's events up to SEQ (422 past the log's end, 404 before it existed).
At = Annotated[
    int | None,
    typer.Option("--at", min=1, metavar="SEQ", help="the state as of this stream sequence, from the log"),
]

jobs_app = typer.Typer(
    rich_markup_mode=None, help="List, inspect, cancel and retry jobs.", no_args_is_help=True
)
workers_app = typer.Typer(rich_markup_mode=None, help="The worker fleet.", no_args_is_help=True)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ClientError as exc:
        raise fail(str(exc), exc.exit_code) from exc


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise fail(f"{what} {value!r} must look like KEY=VALUE", EXIT_BAD_INPUT)
        out[key] = val
    return out


def _load_file(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", EXIT_BAD_INPUT) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{path} is not valid JSON: {exc}", EXIT_BAD_INPUT) from exc


def build_job(
    base: dict[str, Any],
    *,
    name: str | None,
    shell: str | None,
    bash: bool,
    python_script: str | None,
    module: str | None,
    callable_: str | None,
    args: list[str],
    tags: list[str],
    user: str | None,
    priority: int | None,
    env: list[str],
    cwd: str | None,
    timeout: float | None,
    max_retries: int | None,
    retry_backoff: float | None,
    labels: list[str],
) -> dict[str, Any]:
    """A job body from a file's object and flags; flags win. Validation is the API's job."""
    job = dict(base)
    chosen = [x for x in (shell, python_script, module, callable_) if x is not None]
    if len(chosen) > 1:
        raise fail("give only one of --shell, --python, --module or --callable", EXIT_BAD_INPUT)
    if shell is not None:
        job["executor"] = {"type": "shell", "script": shell, "shell": "bash" if bash else "sh"}
    elif chosen:
        executor: dict[str, Any] = {"type": "python"}
        if python_script is not None:
            executor["script"] = python_script
        elif module is not None:
            executor["module"] = module
        else:
            executor["callable"] = callable_
        if args:
            try:
                executor["args"] = [json.loads(a) for a in args]
            except json.JSONDecodeError as exc:
                raise fail(f"--arg values are JSON (quote strings as '\"text\"'): {exc}", 2) from exc
        job["executor"] = executor
    if "executor" not in job:
        raise fail("say what to run: --shell, --python, --module, --callable or --file", EXIT_BAD_INPUT)
    if name is not None:
        job["name"] = name
    job.setdefault("name", _default_name(job["executor"]))
    optional = {
        "user": user, "priority": priority, "cwd": cwd, "timeout_s": timeout,
        "max_retries": max_retries, "retry_backoff_s": retry_backoff,
    }  # fmt: skip
    job.update({k: v for k, v in optional.items() if v is not None})
    if tags:
        job["tags"] = sorted({*job.get("tags", []), *tags})
    if env:
        job["env"] = {**job.get("env", {}), **_pairs(env, "--env")}
    if labels:
        job["labels"] = {**job.get("labels", {}), **_pairs(labels, "--label")}
    return job


def _default_name(executor: dict[str, Any]) -> str:
    what = str(executor.get("callable") or executor.get("module") or executor.get("script") or "job")
    return what.strip().split("\n")[0][:60] or "job"


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(logs)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(workers_app, name="workers")
    from services.cli.admin_commands import domains_app, templates_app
    from services.cli.schedule_commands import schedules_app

    app.add_typer(schedules_app, name="schedules")
    app.add_typer(domains_app, name="domains")
    app.add_typer(templates_app, name="templates")


def submit(
    name: Annotated[str | None, typer.Option(help="job name [default: from the command]")] = None,
    shell: Annotated[str | None, typer.Option(help="shell script, run by /bin/sh -c")] = None,
    bash: Annotated[bool, typer.Option("--bash", help="run --shell with bash")] = False,
    python_script: Annotated[str | None, typer.Option("--python", help="python source to run")] = None,
    module: Annotated[str | None, typer.Option(help="python module to run (python -m)")] = None,
    callable_: Annotated[
        str | None, typer.Option("--callable", help="'pkg.mod:func' run in the worker process")
    ] = None,
    arg: Annotated[list[str], typer.Option("--arg", help="JSON argument of --callable (repeatable)")] = [],  # noqa: B006
    tag: Annotated[list[str], typer.Option("--tag", help="worker tag required (repeatable)")] = [],  # noqa: B006
    user: Annotated[str | None, typer.Option(help="user the job runs as")] = None,
    priority: Annotated[int | None, typer.Option(help="higher runs first")] = None,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE (repeatable)")] = [],  # noqa: B006
    cwd: Annotated[str | None, typer.Option(help="working directory on the worker")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds before the job is killed")] = None,
    max_retries: Annotated[int | None, typer.Option(help="retries after a failure")] = None,
    retry_backoff: Annotated[float | None, typer.Option(help="first retry delay, doubling")] = None,
    label: Annotated[list[str], typer.Option("--label", help="KEY=VALUE (repeatable)")] = [],  # noqa: B006
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="JSON job, list of jobs, or - for stdin")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="same key, same job")] = None,
    template: Annotated[str | None, typer.Option(help="run this template instead of a spec")] = None,
    version: Annotated[int | None, typer.Option(help="the template's version [default: latest]")] = None,
    override: Annotated[
        list[str], typer.Option("--override", help="KEY=JSON replacing a field of the template's job")
    ] = [],  # noqa: B006
    wait: Annotated[bool, typer.Option("--wait", help="stream the output and wait for the end")] = False,
    wait_timeout: Annotated[
        float | None, typer.Option(help=f"with --wait: give up after SECONDS (exit {EXIT_WAIT_TIMEOUT})")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit a job (or, with --file holding a list, a batch of up to 1,000)."""
    client = Client.from_env(url, token)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    if template is not None:
        given = [n for n, v in (("--shell", shell), ("--python", python_script), ("--module", module),
                                ("--callable", callable_), ("--file", file)) if v is not None]  # fmt: skip
        if given:
            raise fail(f"--template names the job; drop {', '.join(given)} (use --override)", EXIT_BAD_INPUT)
        from services.cli.admin_commands import overrides

        body: dict[str, Any] = {"template": template, "overrides": overrides(override)}
        if version is not None:
            body["version"] = version
        job = _call(client.post, "/jobs", body, headers)
        if not wait:
            render.print_json(job) if as_json else typer.echo(job["id"])
            return
        _finish_waiting(client, job["id"], as_json, wait_timeout)
    loaded = _load_file(file) if file else {}
    if isinstance(loaded, dict) and "jobs" in loaded:
        loaded = loaded["jobs"]
    flags = dict(
        name=name, shell=shell, bash=bash, python_script=python_script, module=module,
        callable_=callable_, args=arg, tags=tag, user=user, priority=priority, env=env, cwd=cwd,
        timeout=timeout, max_retries=max_retries, retry_backoff=retry_backoff, labels=label,
    )  # fmt: skip
    if isinstance(loaded, list):
        if not loaded or not all(isinstance(j, dict) for j in loaded):
            raise fail(f"{file} must hold a job object or a non-empty list of them", EXIT_BAD_INPUT)
        batch = [build_job(j, **flags) for j in loaded]  # type: ignore[arg-type]
        out = _call(client.post, "/jobs/batch", {"jobs": batch}, headers)
        if as_json:
            render.print_json(out)
        else:
            typer.echo(f"submitted {out['created']} jobs ({out['existing']} already existed)")
            for job_id in out["ids"]:
                typer.echo(job_id)
        if wait:
            deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
            raise typer.Exit(_wait_all(client, out["ids"], as_json, deadline))
        return
    if not isinstance(loaded, dict):
        raise fail(f"{file} must hold a job object or a list of them", EXIT_BAD_INPUT)
    job = _call(client.post, "/jobs", build_job(loaded, **flags), headers)  # type: ignore[arg-type]
    if not wait:
        if as_json:
            render.print_json(job)
        else:
            typer.echo(job["id"])
        return
    _finish_waiting(client, job["id"], as_json, wait_timeout)


def _finish_waiting(client: Client, job_id: str, as_json: bool, wait_timeout: float | None) -> None:
    """`--wait`: stream the whole output (not with --json), say why the job waits, report, exit."""
    if not as_json:
        typer.echo(f"job {job_id} submitted; following its output", err=True)
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    final = _wait_one(client, job_id, deadline, follow=not as_json)
    if as_json:
        render.print_json(final)
    else:
        if final.get("result") is not None:
            typer.echo(json.dumps(final["result"]))
        typer.echo(
            f"job {final['id']} {final['status']}" + (f": {final['error']}" if final.get("error") else ""),
            err=True,
        )
    raise typer.Exit(0 if final["status"] == "succeeded" else EXIT_JOB_FAILED)


def _timed_out(job_id: str, wait_timeout_s: float, job: dict[str, Any]) -> typer.Exit:
    reason = f" (pending: {job['pending_reason']})" if job.get("pending_reason") else ""
    return fail(
        f"job {job_id} is still {job.get('status', 'unknown')} after {wait_timeout_s:g}s{reason}; "
        f"it goes on: follow it with `jobstream logs -f {job_id}`",
        EXIT_WAIT_TIMEOUT,
    )


def _wait_one(
    client: Client, job_id: str, deadline: float | None = None, follow: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Poll the job to its end; print its pending reason whenever it changes (unless `quiet`).

    With `follow`, its output streams meanwhile, and the wait ends only once all of it printed."""
    started = time.monotonic()
    errors: list[BaseException] = []
    done = threading.Event()

    def stream() -> None:
        try:
            _follow_logs(client, job_id, None)
        except BaseException as exc:  # handed to the waiting thread
            errors.append(exc)
        finally:
            done.set()

    if follow:
        threading.Thread(target=stream, name="follow-logs", daemon=True).start()
    else:
        done.set()
    said: str | None = None
    while True:
        job: dict[str, Any] = _call(client.get, f"/jobs/{job_id}")
        reason = job.get("pending_reason") if job["status"] == "pending" else None
        if reason and reason != said and not quiet:
            typer.echo(f"job {job_id} pending: {reason}", err=True)
        said = reason or said if job["status"] == "pending" else None
        if job["status"] in TERMINAL:
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise _timed_out(job_id, deadline - started, job)
        time.sleep(WAIT_POLL_S)
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    if not done.wait(remaining):
        raise _timed_out(job_id, (deadline or started) - started, job)
    if errors:
        raise errors[0]
    return job


def _wait_all(client: Client, ids: list[str], as_json: bool, deadline: float | None = None) -> int:
    finals = [_wait_one(client, job_id, deadline, quiet=True) for job_id in ids]
    failed = [j for j in finals if j["status"] != "succeeded"]
    if as_json:
        render.print_json(finals)
    else:
        typer.echo(f"{len(finals) - len(failed)} succeeded, {len(failed)} did not", err=True)
    return EXIT_JOB_FAILED if failed else 0


def _follow_logs(client: Client, job_id: str, attempt: int | None) -> str | None:
    """Print output lines as they come; the job's final status when the stream ends."""
    params: dict[str, Any] = {"follow": "true"}
    if attempt is not None:
        params["attempt"] = attempt
    printer = _Printer()
    try:
        for event, data in client.sse(f"/jobs/{job_id}/logs", **params):
            if event == "line":
                printer.line(data, flush=True)
            elif event == "end":
                if data.get("incomplete"):
                    where = data.get("resume_after")
                    typer.echo(f"warning: the output ended early (lines missing after position {where}); "
                               f"see `jobstream logs {job_id}`", err=True)  # fmt: skip
                return str(data.get("status"))
    except ClientError as exc:
        raise fail(str(exc), exc.exit_code) from exc
    return None


def logs(
    job_id: Annotated[str, typer.Argument(help="job id")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until the job ends")] = False,
    attempt: Annotated[int | None, typer.Option(help="only this attempt")] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", min=1, max=100_000, help="only the last N lines")
    ] = None,
    head: Annotated[int | None, typer.Option("--head", min=1, help="only the first N lines")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Print a job's output (stdout to stdout, stderr to stderr): all of it, page after page."""
    client = Client.from_env(url, token)
    if follow:
        _follow_logs(client, job_id, attempt)
        return
    if tail is not None and head is not None:
        raise fail("give --tail or --head, not both", EXIT_BAD_INPUT)
    printer = _Printer()
    everything: list[dict[str, Any]] = []
    cursor: str | None = None
    left = head
    while True:
        limit = min(left, LOG_PAGE) if left is not None else LOG_PAGE
        page = _call(client.get, f"/jobs/{job_id}/logs", attempt=attempt, cursor=cursor, tail=tail,
                     limit=limit)  # fmt: skip
        items: list[dict[str, Any]] = page["items"]
        if as_json:
            everything.extend(items)
        else:
            for line in items:
                printer.line(line)
        if left is not None:
            left -= len(items)
        cursor = page.get("next_cursor")
        if not cursor or tail is not None or (left is not None and left <= 0):
            break
    sys.stdout.flush()
    if as_json:
        render.print_json(everything)


LOG_PAGE = 10_000


class _Printer:
    """Output lines to stdout/stderr, with a separator on stderr when a new attempt starts."""

    def __init__(self) -> None:
        self.attempt: int | None = None

    def line(self, data: dict[str, Any], flush: bool = False) -> None:
        attempt = data.get("attempt")
        if attempt is not None and self.attempt is not None and attempt != self.attempt:
            print(f"--- attempt {attempt} (retry) ---", file=sys.stderr, flush=True)
        self.attempt = attempt if attempt is not None else self.attempt
        stream = sys.stderr if data.get("stream") == "stderr" else sys.stdout
        print(data["line"], file=stream, flush=flush)


@jobs_app.command("ls")
def jobs_ls(
    status: Annotated[str | None, typer.Option(help="status, or several comma-separated")] = None,
    name: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    worker: Annotated[str | None, typer.Option()] = None,
    label: Annotated[str | None, typer.Option(help="KEY=VALUE")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="continue after a previous page")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Jobs, newest first."""
    client = Client.from_env(url, token)
    page = _call(
        client.get, "/jobs", status=status, name=name, tag=tag, worker=worker, label=label, limit=limit,
        cursor=cursor,
    )  # fmt: skip
    if as_json:
        render.print_json(page)
        return
    out = render.console()
    out.print(render.jobs_table(page["items"]))
    if page.get("next_cursor"):
        # The hint repeats the filters: a cursor alone would page through every job.
        given = {"status": status, "name": name, "tag": tag, "worker": worker, "label": label}
        flags = "".join(f" --{k} {shlex.quote(v)}" for k, v in given.items() if v is not None)
        flags += f" --limit {limit}" if limit != 50 else ""
        out.print(f"[dim]more: jobstream jobs ls{flags} --cursor {page['next_cursor']}[/]", markup=True)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument()],
    at: At = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A job's state, timings and attempts (now, or `--at SEQ` as it was then)."""
    job = _call(Client.from_env(url, token).get, f"/jobs/{job_id}", as_of_seq=at)
    if as_json:
        render.print_json(job)
        return
    out = render.console()
    if at is not None:
        out.print(f"as of sequence {at} (the job's last event then: {job['last_seq']})")
    out.print(render.job_detail(job))
    if job.get("attempts"):
        out.print(render.attempts_table(job))


@jobs_app.command("events")
def jobs_events(
    job_id: Annotated[str, typer.Argument()], url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """A job's full history from the event log."""
    events = _call(Client.from_env(url, token).get, f"/jobs/{job_id}/events")
    if as_json:
        render.print_json(events)
    else:
        render.console().print(render.events_table(events))


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="recorded on the job")] = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a job: at once if pending, through its worker if running."""
    job = _call(Client.from_env(url, token).post, f"/jobs/{job_id}/cancel", {"reason": reason})
    if as_json:
        render.print_json(job)
    else:
        state = "cancelled" if job["status"] == "cancelled" else "cancellation requested"
        typer.echo(f"job {job_id}: {state}")


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[str, typer.Argument()], url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Run a finished job again as a new job."""
    job = _call(Client.from_env(url, token).post, f"/jobs/{job_id}/retry")
    if as_json:
        render.print_json(job)
    else:
        typer.echo(job["id"])


@workers_app.command("ls")
def workers_ls(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Workers of the domain with their load and last heartbeat."""
    workers = _call(Client.from_env(url, token).get, "/workers")
    if as_json:
        render.print_json(workers)
    else:
        render.console().print(render.workers_table(workers))


@workers_app.command("show")
def workers_show(
    worker_id: Annotated[str, typer.Argument()],
    at: At = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One worker (now, or `--at SEQ` as it was then: heartbeats are not events, so no load then)."""
    worker = _call(Client.from_env(url, token).get, f"/workers/{worker_id}", as_of_seq=at)
    if as_json:
        render.print_json(worker)
        return
    out = render.console()
    if at is not None:
        out.print(f"as of sequence {at} (last heartbeat and running jobs are not in the log)")
    out.print(render.workers_table([worker]))


WorkerId = Annotated[str, typer.Argument()]
Reason = Annotated[str, typer.Option(help="recorded in the worker's history")]


def _worker_state(
    worker_id: str, action: str, reason: str, url: str | None, token: str | None, as_json: bool
) -> None:
    worker = _call(Client.from_env(url, token).post, f"/workers/{worker_id}/{action}", {"reason": reason})
    if as_json:
        render.print_json(worker)
    else:
        typer.echo(f"worker {worker_id}: {worker.get('admin_state', 'active')}")


@workers_app.command("drain")
def workers_drain(
    worker_id: WorkerId,
    reason: Reason = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Drain a worker: no new jobs; those it runs finish; it stays registered."""
    _worker_state(worker_id, "drain", reason, url, token, as_json)


@workers_app.command("disable")
def workers_disable(
    worker_id: WorkerId,
    reason: Reason = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Disable a worker: out of service (no new jobs; running ones go on) until enabled."""
    _worker_state(worker_id, "disable", reason, url, token, as_json)


@workers_app.command("enable")
def workers_enable(
    worker_id: WorkerId,
    reason: Reason = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Enable a drained or disabled worker: it takes new jobs again."""
    _worker_state(worker_id, "enable", reason, url, token, as_json)
