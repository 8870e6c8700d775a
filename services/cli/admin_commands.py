"""`jobstream domains …` and `jobstream templates …`: tenants, their tokens, and job templates."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from services.cli import render
from services.cli.client import EXIT_BAD_INPUT, Client
from services.cli.client_commands import AsJson, Token, Url, _call, _load_file, fail

domains_app = typer.Typer(
    rich_markup_mode=None,
    help="Domains (tenants) and their tokens; needs the admin token.",
    no_args_is_help=True,
)
templates_app = typer.Typer(
    rich_markup_mode=None, help="Named, versioned job specs of the domain.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="domain name")]


def _domains_table(domains: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "STATUS", "TOKENS", "CREATED", "DESCRIPTION"):
        table.add_column(col)
    for d in domains:
        live = sum(1 for t in d["tokens"] if not t["revoked_at"])
        table.add_row(
            d["name"], render.status(d["status"]), str(live), render.when(d["created_at"]), d["description"]
        )
    return table


def _tokens_table(tokens: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "CREATED", "EXPIRES", "REVOKED", "LAST USED"):
        table.add_column(col)
    for t in tokens:
        used = t.get("last_used_at")
        table.add_row(
            t["id"], t["name"], render.when(t["created_at"]), render.when(t["expires_at"]),
            render.when(t["revoked_at"]), render.when(used),
        )  # fmt: skip
    return table


def _show_token(made: dict[str, Any], as_json: bool) -> None:
    if as_json:
        render.print_json(made)
        return
    typer.echo(made["token"])
    typer.echo(f"(token {made['id']}: shown this once; only its hash is kept)", err=True)


@domains_app.command("ls")
def domains_ls(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Every domain with its status and token count."""
    items = _call(Client.from_env(url, token).get, "/admin/domains")
    render.print_json(items) if as_json else render.console().print(_domains_table(items))


@domains_app.command("create")
def domains_create(
    name: Name,
    description: Annotated[str, typer.Option(help="what the domain is for")] = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create a domain; prints its first token, once."""
    made = _call(
        Client.from_env(url, token).post, "/admin/domains", {"name": name, "description": description}
    )
    _show_token(made["token"], as_json)


@domains_app.command("tokens")
def domains_tokens(name: Name, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """A domain's tokens (never their secrets)."""
    items = _call(Client.from_env(url, token).get, f"/admin/domains/{name}/tokens")
    render.print_json(items) if as_json else render.console().print(_tokens_table(items))


@domains_app.command("add-token")
def domains_add_token(
    name: Name,
    token_name: Annotated[str, typer.Option("--name", help="what the token is for")] = "cli",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Add a token to a domain; prints it, once."""
    made = _call(Client.from_env(url, token).post, f"/admin/domains/{name}/tokens", {"name": token_name})
    _show_token(made, as_json)


@domains_app.command("revoke-token")
def domains_revoke_token(
    name: Name, token_id: str, url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Revoke a token: it stops working at once."""
    result = _call(Client.from_env(url, token).request, "DELETE", f"/admin/domains/{name}/tokens/{token_id}")
    render.print_json(result) if as_json else typer.echo(f"token {token_id} revoked")


@domains_app.command("rotate-token")
def domains_rotate_token(
    name: Name,
    token_id: str,
    overlap: Annotated[float, typer.Option(help="seconds the old token keeps working")] = 3600,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Replace a token; prints the new one, once."""
    path = f"/admin/domains/{name}/tokens/{token_id}/rotate"
    _show_token(_call(Client.from_env(url, token).post, path, {"overlap_s": overlap}), as_json)


@domains_app.command("disable")
def domains_disable(
    name: Name,
    reason: Annotated[str, typer.Option()] = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Refuse the domain's tokens until enabled."""
    result = _call(Client.from_env(url, token).post, f"/admin/domains/{name}/disable", {"reason": reason})
    render.print_json(result) if as_json else typer.echo(f"domain {name}: {result['status']}")


@domains_app.command("enable")
def domains_enable(name: Name, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Accept the domain's tokens again."""
    result = _call(Client.from_env(url, token).post, f"/admin/domains/{name}/enable")
    render.print_json(result) if as_json else typer.echo(f"domain {name}: {result['status']}")


@domains_app.command("rm")
def domains_rm(
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Delete a domain: gone for every interface; its events stay in the log."""
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"deleting domain {name} needs --yes when not run from a terminal", EXIT_BAD_INPUT)
        typer.confirm(f"Delete domain {name}? Its tokens stop working and its jobs stop running", abort=True)
    result = _call(Client.from_env(url, token).request, "DELETE", f"/admin/domains/{name}")
    render.print_json(result) if as_json else typer.echo(f"domain {name}: {result['status']}")


@templates_app.command("ls")
def templates_ls(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """The domain's templates."""
    items = _call(Client.from_env(url, token).get, "/templates")
    if as_json:
        render.print_json(items)
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "VERSION", "JOB", "UPDATED", "DESCRIPTION"):
        table.add_column(col)
    for t in items:
        table.add_row(t["name"], str(t["latest_version"]), t["job"]["name"], render.when(t["updated_at"]),
                      t["description"])  # fmt: skip
    render.console().print(table)


@templates_app.command("show")
def templates_show(name: str, url: Url = None, token: Token = None) -> None:
    """A template, its latest job spec and its versions (JSON)."""
    render.print_json(_call(Client.from_env(url, token).get, f"/templates/{name}"))


@templates_app.command("save")
def templates_save(
    name: str,
    file: Annotated[str, typer.Option(help="the job spec as JSON (as for POST /jobs); - for stdin")],
    description: Annotated[str, typer.Option()] = "",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Save a template from a job spec file: a new version, or nothing if unchanged."""
    job = _load_file(file)
    if not isinstance(job, dict):
        raise fail(f"{file} must hold one job object", EXIT_BAD_INPUT)
    saved = _call(Client.from_env(url, token).request, "PUT", f"/templates/{name}",
                  json={"job": job, "description": description})  # fmt: skip
    render.print_json(saved) if as_json else typer.echo(f"{name}@{saved['latest_version']}")


@templates_app.command("rm")
def templates_rm(name: str, url: Url = None, token: Token = None) -> None:
    """Delete a template; jobs made from it keep their spec."""
    _call(Client.from_env(url, token).request, "DELETE", f"/templates/{name}")
    typer.echo(f"template {name} deleted")


def overrides(values: list[str]) -> dict[str, Any]:
    """KEY=JSON pairs (a bare word is taken as a string)."""
    out: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise fail(f"--override {value!r} must look like KEY=VALUE", EXIT_BAD_INPUT)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def nats_login_url(domain_token: str, server: str) -> str:
    """The NATS URL that logs in with a domain token: user jst_<id>, password its secret."""
    from urllib.parse import urlsplit

    from events.domain import parse_token

    parsed = parse_token(domain_token)
    if parsed is None:
        raise fail("not a domain token (they look like jst_<id>_<secret>)", EXIT_BAD_INPUT)
    where = urlsplit(server if "://" in server else f"nats://{server}")
    if not where.hostname or where.scheme not in ("nats", "tls"):
        raise fail(f"--server {server!r} is not a NATS URL like nats://host:4222", EXIT_BAD_INPUT)
    port = f":{where.port}" if where.port else ""
    return f"{where.scheme}://jst_{parsed[0]}:{parsed[1]}@{where.hostname}{port}"


@domains_app.command("nats-url")
def domains_nats_url(
    domain_token: Annotated[str, typer.Argument(help="a domain token, jst_<id>_<secret>")],
    server: Annotated[
        str | None,
        typer.Option(envvar="NATS_URL", help="the NATS server [default: the one the API uses]"),
    ] = None,
    url: Url = None,
) -> None:
    """Print the NATS URL a domain token logs in with, for `nats sub -s URL 'ev.<domain>.>'`."""
    if server is None:
        # The API knows where its broker is; a guess of 4222 may be another server entirely.
        server = str(_call(Client.from_env(url, domain_token).get, "/info")["broker"]["url"])
    typer.echo(nats_login_url(domain_token, server))
