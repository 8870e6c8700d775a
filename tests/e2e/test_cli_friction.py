"""What a new user trips over in the CLI on day one (issue 8, items 8 and 9), as they would type it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.e2e.system import TOKEN, System
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.slow


def test_versions_urls_and_help_text(system: System) -> None:
    version = cli(system, "--version")
    assert version.returncode == 0 and re.fullmatch(r"jobstream \d+\.\d+\.\d+\S*", version.stdout.strip())
    helptext = cli(system, "worker", "--help").stdout
    assert "[env WORKER_DOMAIN, default prod]" in helptext, helptext
    # The banner prints …/api/v1: pasting it must work.
    env = {**system.env(), "JOBSTREAM_URL": system.api_url + "/api/v1", "JOBSTREAM_TOKEN": TOKEN}
    ls = subprocess.run(
        [sys.executable, "-m", "services.cli", "workers", "ls", "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ls.returncode == 0, ls.stderr
    assert isinstance(json.loads(ls.stdout), list)


def test_schedules_by_name_upsert_outcome_and_zone_labels(system: System) -> None:
    args = ["schedules", "create", "--name", "nightly", "--cron", "0 2 * * *", "--tz", "Europe/Berlin",
            "--shell", "true", "--upsert"]  # fmt: skip
    first = cli(system, *args)
    assert first.returncode == 0 and "(created)" in first.stdout, first.stdout + first.stderr
    assert re.search(r"next fire \d{4}-\d\d-\d\d 02:00:00 CES?T", first.stdout), first.stdout
    again = cli(system, *args)
    assert "(unchanged)" in again.stdout, again.stdout
    changed = cli(system, *args[:-1], "--jitter", "5", "--upsert")
    assert "(updated)" in changed.stdout, changed.stdout
    shown = cli(system, "schedules", "show", "nightly")
    assert shown.returncode == 0 and "0 2 * * *" in shown.stdout, shown.stderr
    assert re.search(r"02:00:\d\d CES?T", shown.stdout), shown.stdout  # jitter moves it by seconds
    paused = cli(system, "schedules", "pause", "nightly")
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    missing = cli(system, "schedules", "show", "no-such-schedule")
    assert missing.returncode == 4 and "no schedule with id or name 'no-such-schedule'" in missing.stderr


def test_admin_picks_a_domain_and_removal_asks_first(system: System) -> None:
    made = cli(system, "domains", "create", "green")
    assert made.returncode == 0, made.stderr
    job = cli(system, "--domain", "green", "submit", "--shell", "true", "--name", "in-green")
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.strip()
    assert job_id in cli(system, "--domain", "green", "jobs", "ls").stdout
    assert job_id not in cli(system, "jobs", "ls").stdout  # the admin token acts in prod by default
    # A token used once shows when, as a time, not an epoch float.
    with system.client(made.stdout.strip()) as c:
        assert c.get("/jobs").status_code == 200
    tokens = json.loads(cli(system, "domains", "tokens", "green", "--json").stdout)
    assert re.match(r"\d{4}-\d\d-\d\dT", tokens[0]["last_used_at"]), tokens
    refused = cli(system, "domains", "rm", "green")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert json.loads(cli(system, "domains", "ls", "--json").stdout)
    assert any(
        d["name"] == "green" and d["status"] != "deleted"
        for d in json.loads(cli(system, "domains", "ls", "--json").stdout)
    )
    removed = cli(system, "domains", "rm", "green", "--yes")
    assert removed.returncode == 0 and "deleted" in removed.stdout, removed.stderr


def test_the_paging_hint_keeps_the_filters(system: System) -> None:
    for i in range(3):
        assert (
            cli(system, "submit", "--shell", "true", "--name", f"p{i}", "--label", "batch=hint").returncode
            == 0
        )
    page = cli(system, "jobs", "ls", "--label", "batch=hint", "--limit", "1")
    hint = next(line for line in page.stdout.splitlines() if line.startswith("more:"))
    assert "--label batch=hint" in hint and "--limit 1" in hint and "--cursor " in hint
    following = cli(system, *hint.removeprefix("more: jobstream ").split())
    assert following.returncode == 0 and "more:" in following.stdout
