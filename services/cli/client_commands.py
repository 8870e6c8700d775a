"""The API client half of the CLI: submit, jobs, logs, workers. Human tables, or `--json`."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli import render
from services.cli.client import EXIT_BAD_INPUT, EXIT_JOB_FAILED, Client, ClientError

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
WAIT_POLL_S = 0.25

Url = Annotated[str | None, typer.Option("--url", envvar="JOBSTREAM_URL", help="API base URL")]
Token = Annotated[str | None, typer.Option("--token", envvar="JOBSTREAM_TOKEN", help="bearer token")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]

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
        final = _wait_one(client, job["id"])
        render.print_json(final) if as_json else typer.echo(f"job {job['id']}: {final['status']}", err=True)
        raise typer.Exit(0 if final["status"] == "succeeded" else EXIT_JOB_FAILED)
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
            raise typer.Exit(_wait_all(client, out["ids"], as_json))
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
    if not as_json:
        typer.echo(f"job {job['id']} submitted; following its output", err=True)
        _follow_logs(client, job["id"], None)
    final = _wait_one(client, job["id"])
    if as_json:
        render.print_json(final)
    else:
        typer.echo(
            f"job {final['id']} {final['status']}" + (f": {final['error']}" if final.get("error") else ""),
            err=True,
        )
    raise typer.Exit(0 if final["status"] == "succeeded" else EXIT_JOB_FAILED)


def _wait_one(client: Client, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = _call(client.get, f"/jobs/{job_id}")
        if job["status"] in TERMINAL:
            return job
        time.sleep(WAIT_POLL_S)


def _wait_all(client: Client, ids: list[str], as_json: bool) -> int:
    finals = [_wait_one(client, job_id) for job_id in ids]
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
    try:
        for event, data in client.sse(f"/jobs/{job_id}/logs", **params):
            if event == "line":
                stream = sys.stderr if data.get("stream") == "stderr" else sys.stdout
                print(data["line"], file=stream, flush=True)
            elif event == "end":
                return str(data.get("status"))
    except ClientError as exc:
        raise fail(str(exc), exc.exit_code) from exc
    return None


def logs(
    job_id: Annotated[str, typer.Argument(help="job id")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until the job ends")] = False,
    attempt: Annotated[int | None, typer.Option(help="only this attempt")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Print a job's output (stdout to stdout, stderr to stderr)."""
    client = Client.from_env(url, token)
    if follow:
        _follow_logs(client, job_id, attempt)
        return
    lines = _call(client.get, f"/jobs/{job_id}/logs", attempt=attempt)
    if as_json:
        render.print_json(lines)
        return
    for line in lines:
        print(line["line"], file=sys.stderr if line["stream"] == "stderr" else sys.stdout)


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
    job_id: Annotated[str, typer.Argument()], url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """A job's state, timings and attempts."""
    job = _call(Client.from_env(url, token).get, f"/jobs/{job_id}")
    if as_json:
        render.print_json(job)
        return
    out = render.console()
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
    worker_id: Annotated[str, typer.Argument()], url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """One worker."""
    worker = _call(Client.from_env(url, token).get, f"/workers/{worker_id}")
    render.print_json(worker) if as_json else render.console().print(render.workers_table([worker]))
