"""`jobstream schedules …`: create, list, inspect, pause, resume, run now, preview and remove schedules."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from services.cli import render
from services.cli.client import EXIT_BAD_INPUT, EXIT_NOT_FOUND, Client, ClientError
from services.cli.client_commands import AsJson, At, Token, Url, _call, _load_file, _pairs, build_job, fail

schedules_app = typer.Typer(rich_markup_mode=None, help="Cron and interval schedules.", no_args_is_help=True)

Id = Annotated[str, typer.Argument(help="schedule id or name")]


@schedules_app.command("ls")
def schedules_ls(
    status: Annotated[str | None, typer.Option(help="active, paused, ended, deleted (comma list)")] = None,
    name: Annotated[str | None, typer.Option()] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Schedules with their next and last fire times."""
    items = _call(Client.from_env(url, token).get, "/schedules", status=status, name=name)
    render.print_json(items) if as_json else render.console().print(render.schedules_table(items))


@schedules_app.command("show")
def schedules_show(
    schedule_id: Id,
    runs: Annotated[int, typer.Option(min=0, max=500, help="how many recent ticks to show")] = 10,
    at: At = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A schedule and its recent ticks (now, or `--at SEQ` as it was then, with the ticks recorded
    up to SEQ; their jobs' statuses are today's)."""
    client = Client.from_env(url, token)
    schedule_id = _call(resolve, client, schedule_id)
    schedule = _call(client.get, f"/schedules/{schedule_id}", as_of_seq=at)
    before = None if at is None else at + 1  # the runs route pages by `seq < before`
    history = _call(client.get, f"/schedules/{schedule_id}/runs", limit=max(runs, 1), before=before)
    history = history["items"][:runs]
    if as_json:
        render.print_json({**schedule, "runs": history})
        return
    out = render.console()
    if at is not None:
        out.print(f"as of sequence {at} (the schedule's last event then: {schedule['last_seq']})")
    out.print(render.schedule_detail(schedule))
    if history:
        out.print(render.runs_table(history))


@schedules_app.command("create")
def schedules_create(
    name: Annotated[str | None, typer.Option(help="schedule name (unique in the domain)")] = None,
    cron: Annotated[str | None, typer.Option(help="5 fields, or 6 with seconds first")] = None,
    every: Annotated[float | None, typer.Option(help="interval in seconds, instead of --cron")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA time zone of the cron expression")] = None,
    overlap: Annotated[str | None, typer.Option(help="allow, skip, queue, buffer_one, cancel_other")] = None,
    catchup: Annotated[str | None, typer.Option(help="none, fire_immediately, spread")] = None,
    jitter: Annotated[float | None, typer.Option(help="seconds of deterministic jitter")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    shell: Annotated[str | None, typer.Option(help="job: shell script")] = None,
    bash: Annotated[bool, typer.Option("--bash", help="run --shell with bash")] = False,
    callable_: Annotated[str | None, typer.Option("--callable", help="job: pkg.mod:func")] = None,
    arg: Annotated[list[str] | None, typer.Option(help="JSON argument of --callable (repeat)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="job tag (repeat)")] = None,
    timeout: Annotated[float | None, typer.Option(help="job timeout_s")] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE on the schedule (repeat)")] = None,
    file: Annotated[str | None, typer.Option(help="schedule as JSON (flags override); - for stdin")] = None,
    upsert: Annotated[
        bool, typer.Option("--upsert", help="create, or update the one with this name")
    ] = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create a schedule whose ticks run a job."""
    body: dict[str, Any] = dict(_load_file(file)) if file else {}
    if cron is not None and every is not None:
        raise fail("give --cron or --every, not both", EXIT_BAD_INPUT)
    if cron is not None:
        body["cron"] = cron
        body.pop("interval_s", None)
    if every is not None:
        body["interval_s"] = every
        body.pop("cron", None)
    options = {
        "name": name, "timezone": tz, "overlap_policy": overlap, "catchup_policy": catchup,
        "jitter_s": jitter,
    }  # fmt: skip
    body.update({k: v for k, v in options.items() if v is not None})
    if paused:
        body["paused"] = True
    if label:
        body["labels"] = {**body.get("labels", {}), **_pairs(label, "--label")}
    if shell is not None or callable_ is not None or "job" not in body:
        body["job"] = build_job(
            body.get("job", {}), name=body.get("name"), shell=shell, bash=bash, python_script=None,
            module=None, callable_=callable_, args=arg or [], tags=tag or [], user=None, priority=None,
            env=[], cwd=None, timeout=timeout, max_retries=None, retry_backoff=None, labels=[],
        )  # fmt: skip
    if "name" not in body:
        raise fail("a schedule needs --name", EXIT_BAD_INPUT)
    created = _call(Client.from_env(url, token).post, "/schedules/upsert" if upsert else "/schedules", body)
    if as_json:
        render.print_json(created)
    else:
        zone = created.get("spec", {}).get("timezone")
        what = f"  ({created['upsert']})" if "upsert" in created else "  (created)"
        typer.echo(
            f"{created['id']}  next fire {render.when(created.get('next_fire_at'), zone) or '-'}{what}"
        )


def resolve(client: Client, id_or_name: str) -> str:
    """Schedules are addressed by id or by name: names are unique among live schedules."""
    try:
        return str(client.get(f"/schedules/{id_or_name}")["id"])
    except ClientError as exc:
        if exc.exit_code not in (EXIT_NOT_FOUND, EXIT_BAD_INPUT):
            raise
    found = client.get("/schedules", name=id_or_name)
    if len(found) == 1:
        return str(found[0]["id"])
    raise ClientError(f"no schedule with id or name {id_or_name!r}", EXIT_NOT_FOUND)


def _action(
    schedule_id: str, action: str, url: str | None, token: str | None, as_json: bool, **body: Any
) -> None:
    client = Client.from_env(url, token)
    schedule_id = _call(resolve, client, schedule_id)
    result = _call(client.post, f"/schedules/{schedule_id}/{action}", body or None)
    if as_json:
        render.print_json(result)
    else:
        typer.echo(f"schedule {schedule_id}: {result['status']}")


@schedules_app.command("pause")
def schedules_pause(
    schedule_id: Id,
    note: Annotated[str, typer.Option(help="why, shown with the schedule")] = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Stop firing until resumed."""
    _action(schedule_id, "pause", url, token, as_json, note=note)


@schedules_app.command("resume")
def schedules_resume(schedule_id: Id, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Fire again from the next tick after now."""
    _action(schedule_id, "resume", url, token, as_json)


@schedules_app.command("run-now")
def schedules_run_now(schedule_id: Id, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Run the schedule's job now; prints the job id."""
    client = Client.from_env(url, token)
    result = _call(client.post, f"/schedules/{_call(resolve, client, schedule_id)}/run-now")
    render.print_json(result) if as_json else typer.echo(result["job_id"])


@schedules_app.command("preview")
def schedules_preview(
    schedule_id: Id,
    count: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The next fire times, in the schedule's zone and in UTC."""
    client = Client.from_env(url, token)
    items = _call(client.get, f"/schedules/{_call(resolve, client, schedule_id)}/preview", count=count)
    render.print_json(items) if as_json else render.console().print(render.preview_table(items))


@schedules_app.command("rm")
def schedules_rm(schedule_id: Id, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Delete a schedule: it stops firing; its history stays readable."""
    client = Client.from_env(url, token)
    schedule_id = _call(resolve, client, schedule_id)
    result = _call(client.request, "DELETE", f"/schedules/{schedule_id}")
    render.print_json(result) if as_json else typer.echo(f"schedule {schedule_id}: {result['status']}")
