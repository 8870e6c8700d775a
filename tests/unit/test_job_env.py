"""What a job inherits from its worker: nothing that could be a credential; its own env as given."""

from __future__ import annotations

import asyncio

import pytest

from events.job import JobSpec, ShellExecutor
from services.worker.executors import base
from services.worker.executors.base import RunContext, is_secret_env, job_env, worker_env_for_jobs

SECRETS = [
    "NATS_URL",
    "NATS_SERVICE_PASSWORD",
    "NATS_CREDS",
    "NATS_NKEY",
    "NATS_USER",
    "ADMIN_TOKEN",
    "JOBSTREAM_TOKEN",
    "WORKER_DOMAIN_TOKEN",
    "API_TOKEN",
    "GITHUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "DB_PASSWORD",
    "MYSQL_PWD",
    "FTP_PASSWD",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "OPENAI_API_KEY",
    "STRIPE_APIKEY",
    "GPG_PRIVATE_KEY",
    "SIGNING_KEY",
    "client_secret",
    "SSH_AUTH_SOCK",
]
PLAIN = ["PATH", "HOME", "LANG", "PYTHONUNBUFFERED", "JOBSTREAM_URL", "WORKER_DOMAIN", "KEYBOARD", "MONKEY"]


@pytest.mark.parametrize("name", SECRETS)
def test_secret_names_are_dropped(name: str) -> None:
    assert is_secret_env(name)


@pytest.mark.parametrize("name", PLAIN)
def test_plain_names_are_kept(name: str) -> None:
    assert not is_secret_env(name)


def test_worker_env_for_jobs_filters() -> None:
    environ = {n: "x" for n in [*SECRETS, *PLAIN]}
    assert set(worker_env_for_jobs(environ)) == set(PLAIN)


def test_job_env_drops_the_workers_credentials_and_keeps_the_jobs_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://jobstream:hunter2@127.0.0.1:4222")
    monkeypatch.setenv("NATS_SERVICE_PASSWORD", "hunter2")
    monkeypatch.setenv("ADMIN_TOKEN", "adm")
    monkeypatch.setenv("MY_API_KEY", "k")
    monkeypatch.setenv("KEEP_ME", "yes")
    spec = JobSpec(
        name="j", executor=ShellExecutor(script="true"), env={"MY_API_KEY": "the user's own", "A": "1"}
    )
    ctx = RunContext("job-1", "prod", 2, spec, sink=None, cancel=asyncio.Event())  # type: ignore[arg-type]
    env = job_env(ctx)
    for name in ("NATS_URL", "NATS_SERVICE_PASSWORD", "ADMIN_TOKEN"):
        assert name not in env
    assert "hunter2" not in "".join(env.values())
    assert env["MY_API_KEY"] == "the user's own"  # spec.env is the user's choice
    assert env["A"] == "1" and env["KEEP_ME"] == "yes"
    assert (env["JOBSTREAM_JOB_ID"], env["JOBSTREAM_ATTEMPT"], env["JOBSTREAM_DOMAIN"]) == (
        "job-1",
        "2",
        "prod",
    )


def test_every_child_executor_goes_through_job_env() -> None:
    """One function builds every job env: run_child is the only place that starts a job process."""
    import inspect

    from services.worker.executors import python, shell

    for module in (python, shell):
        source = inspect.getsource(module)
        assert "environ" not in source and "env=" not in source
    assert "env=job_env(ctx)" in inspect.getsource(base.run_child)
