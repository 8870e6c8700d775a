"""A job of the real `jobstream up` finds no broker credential: not in its environment, not in
any file it can read under the data dir. Every credential-looking value it finds is tried as a
login at the real broker, which must refuse each one."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import nats
import pytest

from services.runtime.ports import free_port
from services.worker.executors.base import is_secret_env
from tests.e2e.up import Up

pytestmark = pytest.mark.slow

FORBIDDEN = (
    "NATS_URL",
    "NATS_SERVICE_PASSWORD",
    "ADMIN_TOKEN",
    "JOBSTREAM_TOKEN",
    "WORKER_DOMAIN_TOKEN",
    "API_TOKEN",
)

# Run by the worker: its environment and every readable file under the data dir, as JSON.
DUMP = r"""
import json, os, sys
out, root = os.environ["DUMP_OUT"], os.environ["DUMP_DATA_DIR"]
files = {}
for d, _, names in os.walk(root):
    for n in names:
        p = os.path.join(d, n)
        try:
            with open(p, "rb") as f:
                files[p] = f.read(4 << 20).decode("utf-8", "replace")
        except OSError as e:
            files[p] = None
with open(out, "w") as f:
    json.dump({"env": dict(os.environ), "files": files}, f)
"""

_WORD = re.compile(r"[A-Za-z0-9_\-.$/+=]{12,}")
_USERINFO = re.compile(r"://([^:/@\s\"']+):([^@/\s\"']+)@")


def candidates(dump: dict[str, object]) -> set[str]:
    """Every value that could be a password or token: env values, whole small files, their
    word-like runs, and the password part of any user:password@ in a URL."""
    texts = [*dump["env"].values(), *(t for t in dump["files"].values() if t)]  # type: ignore[attr-defined]
    found: set[str] = set()
    for text in texts:
        if 0 < len(text.strip()) <= 256:
            found.add(text.strip())
        found.update(_WORD.findall(text))
        found.update(m.group(2) for m in _USERINFO.finditer(text))
    return {c for c in found if 8 <= len(c) <= 256}


async def _refused(server: str, **login: str) -> str:
    """What the broker says to a login: 'ok' if it took it, else its error."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    try:
        nc = await nats.connect(
            server,
            error_cb=on_error,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=3,
            **login,
        )
    except Exception as exc:
        return " ".join([*errors, repr(exc)])
    await nc.close()
    return "ok"


async def _try_all(server: str, values: set[str]) -> dict[str, str]:
    sem = asyncio.Semaphore(16)
    results: dict[str, str] = {}

    async def one(value: str, **login: str) -> None:
        async with sem:
            results[f"{sorted(login.items())}"] = await _refused(server, **login)

    await asyncio.gather(
        *(one(v, user="jobstream", password=v) for v in values),
        *(one(v, token=v) for v in values),
    )
    return results


@pytest.mark.parametrize("given", [False, True], ids=["generated-password", "NATS_SERVICE_PASSWORD"])
def test_a_job_finds_no_broker_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: bool
) -> None:
    data = tmp_path / "data"
    out = tmp_path / "dump.json"
    password = "e2e-known-service-password-42"
    if given:
        monkeypatch.setenv("NATS_SERVICE_PASSWORD", password)
    args = ("--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "1")
    up = Up(data, *args, generated_password=not given).wait_banner()
    try:
        with up.client() as c:
            job = c.post(
                "/jobs",
                json={
                    "name": "dump",
                    "executor": {"type": "python", "script": DUMP},
                    "env": {"DUMP_OUT": str(out), "DUMP_DATA_DIR": str(data)},
                },
            )
            assert job.status_code == 201, job.text
            status = _wait_done(c, job.json()["id"])
            assert status == "succeeded", c.get(f"/jobs/{job.json()['id']}/logs").text
        dump = json.loads(out.read_text())
        env: dict[str, str] = dump["env"]
        for name in FORBIDDEN:
            assert name not in env, name
        assert not [n for n in env if n.startswith("NATS_")], env
        assert not [n for n in env if is_secret_env(n)], env
        assert env["DUMP_OUT"] == str(out)  # the job's own spec.env is kept
        assert "nats_password" not in {Path(p).name for p in dump["files"]}
        auth_conf = str(data / "nats-auth.conf")
        assert dump["files"].get(auth_conf), "the job could read the server's config: it must be in the test"

        values = candidates(dump)
        assert values
        if given:  # the probe works: the real service login is taken, and the job never saw it
            assert asyncio.run(_refused(up.nats_url, user="jobstream", password=password)) == "ok"
            assert password not in values and password not in out.read_text()
        assert up.token in values  # the admin token file is readable (an API credential, not a broker one)
        results = asyncio.run(_try_all(up.nats_url, values))
        taken = [login for login, said in results.items() if said == "ok"]
        assert taken == [], taken
        not_auth = {k: v for k, v in results.items() if "authorization" not in v.lower()}
        assert not_auth == {}, list(not_auth.items())[:5]
    finally:
        assert up.stop() == 0


def _wait_done(c: httpx.Client, job_id: str) -> str:
    for _ in range(600):
        status = str(c.get(f"/jobs/{job_id}").json()["status"])
        if status in ("succeeded", "failed", "timed_out", "cancelled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")
