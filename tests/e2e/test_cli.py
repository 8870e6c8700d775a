"""The `jobstream` client commands against a running system, as a user would type them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.system import TOKEN, System

pytestmark = pytest.mark.slow


def cli(
    system: System, *args: str, token: str | None = TOKEN, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**system.env(), "JOBSTREAM_URL": system.api_url}
    env.pop("JOBSTREAM_TOKEN", None)
    if token is not None:
        env["JOBSTREAM_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


def test_cli_submit_wait_jobs_logs_workers_and_errors(system: System, tmp_path: Path) -> None:
    done = cli(system, "submit", "--name", "hello", "--shell", "echo hello; echo oops >&2", "--wait")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello" and "oops" in done.stderr and "succeeded" in done.stderr

    failed = cli(system, "submit", "--shell", "exit 7", "--wait", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["exit_code"] == 7

    job_id = cli(
        system, "submit", "--callable", "operator:mul", "--arg", "6", "--arg", "7", "--label", "k=v"
    ).stdout.strip()
    system.wait_terminal([job_id])
    shown = json.loads(cli(system, "jobs", "show", job_id, "--json").stdout)
    assert shown["result"] == 42 and shown["spec"]["labels"] == {"k": "v"}
    table = cli(system, "jobs", "ls", "--label", "k=v")
    assert table.returncode == 0 and job_id in table.stdout and "succeeded" in table.stdout
    history = json.loads(cli(system, "jobs", "events", job_id, "--json").stdout)
    assert [e["type"] for e in history] == ["submitted", "dispatched", "started", "succeeded"]

    batch = tmp_path / "jobs.json"
    batch.write_text(
        json.dumps(
            [{"name": f"b{i}", "executor": {"type": "shell", "script": f"echo {i}"}} for i in range(3)]
        )
    )
    out = cli(system, "submit", "--file", str(batch), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["created"] == 3
    ids = json.loads(out.stdout)["ids"]
    system.wait_terminal(ids)
    assert cli(system, "logs", ids[2]).stdout.strip() == "2"

    pending = cli(system, "submit", "--shell", "true", "--tag", "nowhere").stdout.strip()
    assert "cancelled" in cli(system, "jobs", "cancel", pending).stdout
    retried = cli(system, "jobs", "retry", pending).stdout.strip()
    assert json.loads(cli(system, "jobs", "show", retried, "--json").stdout)["retry_of"] == pending

    workers = json.loads(cli(system, "workers", "ls", "--json").stdout)
    assert {w["id"] for w in workers} >= {"w1", "w2"}
    assert "w1" in cli(system, "workers", "ls").stdout

    bad = cli(system, "submit", "--shell", "true", "--timeout", "-1")
    assert bad.returncode == 2 and "timeout_s" in bad.stderr
    assert cli(system, "submit", "--name", "x").returncode == 2
    assert cli(system, "jobs", "show", "nope").returncode == 4
    unauth = cli(system, "jobs", "ls", token=None)
    assert unauth.returncode == 3 and "JOBSTREAM_TOKEN" in unauth.stderr
    down = subprocess.run(
        [sys.executable, "-m", "services.cli", "jobs", "ls"],
        env={**system.env(), "JOBSTREAM_URL": "http://127.0.0.1:9", "JOBSTREAM_TOKEN": TOKEN},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert down.returncode == 5 and "cannot reach" in down.stderr


def test_cli_domains_tokens_and_templates(system: System, tmp_path: Path) -> None:
    made = cli(system, "domains", "create", "cli-team", "--description", "from the cli")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("jst_") and "shown this once" in made.stderr
    assert cli(system, "jobs", "ls", token=token).returncode == 0
    assert "cli-team" in cli(system, "domains", "ls").stdout
    assert cli(system, "domains", "ls", token=token).returncode == 3  # a domain token is not admin
    token_id = token.split("_")[1]
    assert token_id in cli(system, "domains", "tokens", "cli-team").stdout
    assert cli(system, "domains", "revoke-token", "cli-team", token_id).returncode == 0
    assert cli(system, "jobs", "ls", token=token).returncode == 3

    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"name": "greet", "executor": {"type": "shell", "script": "echo hi $WHO"}}))
    saved = cli(system, "templates", "save", "greet", "--file", str(spec))
    assert saved.returncode == 0 and saved.stdout.strip() == "greet@1", saved.stderr
    assert "greet" in cli(system, "templates", "ls").stdout
    ran = cli(
        system, "submit", "--template", "greet", "--override", 'env={"WHO": "there"}', "--wait", "--json"
    )
    assert ran.returncode == 0, ran.stderr
    job = json.loads(ran.stdout)
    assert job["template"] == "greet@1" and job["status"] == "succeeded"
    lines = cli(system, "logs", job["id"]).stdout
    assert "hi there" in lines
    bad = cli(system, "submit", "--template", "greet", "--shell", "true")
    assert bad.returncode == 2 and "--override" in bad.stderr
