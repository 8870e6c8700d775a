"""The broker's logins rendered from domain states: who gets one, and what it may read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import msgspec

from events.domain import (
    DomainDisabled,
    TokenRevoked,
    decide_create,
    evolve_domain,
    make_token,
)
from services.runtime.broker_auth import next_change, render

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def accounts(text: str) -> dict[str, dict[str, Any]]:
    assert text.startswith("accounts ")
    return json.loads(text.removeprefix("accounts "))  # type: ignore[no-any-return]


def users(text: str) -> list[dict[str, object]]:
    parsed = accounts(text)
    return [*parsed["JOBSTREAM"]["users"], *parsed["TENANTS"]["users"]]


def domain(name: str, *tokens_expiring: datetime | None) -> tuple[object, list[str]]:
    state = evolve_domain(None, msgspec.structs.replace(decide_create(name, "t"), at=NOW))
    ids = []
    for expires in tokens_expiring:
        made = make_token(name, "t", "t", expires)
        state = evolve_domain(state, msgspec.structs.replace(made.event, at=NOW))
        ids.append(made.event.token_id)
    return state, ids


def test_service_login_and_one_read_only_login_per_live_token() -> None:
    blue, blue_ids = domain("blue", None, NOW - timedelta(seconds=1), NOW + timedelta(hours=1))
    green, green_ids = domain("green", None)
    gone = evolve_domain(green, TokenRevoked(domain="green", actor="t", token_id=green_ids[0]))
    off, _ = domain("off", None)
    off = evolve_domain(off, DomainDisabled(domain="off", actor="t"))  # type: ignore[arg-type]
    domains = {"blue": blue, "green": gone, "off": off}
    rendered = users(render({"jobstream": "pw"}, domains, NOW))  # type: ignore[arg-type]
    assert rendered[0]["user"] == "jobstream"
    assert bcrypt.checkpw(b"pw", str(rendered[0]["password"]).encode())  # the hash, never "pw"
    names = [u["user"] for u in rendered[1:]]
    assert names == [f"jst_{blue_ids[0]}", f"jst_{blue_ids[2]}"]  # not expired, revoked or disabled
    for user in rendered[1:]:
        assert str(user["password"]).startswith("$2b$")
        perms: Any = user["permissions"]
        assert perms["subscribe"] == {"allow": ["ev.blue.>", "log.blue.>", "hb.blue.>", "_INBOX_blue.>"]}
        # Every subject a token may publish is in its own domain; none is a stream's admin API.
        for subject in perms["publish"]["allow"]:
            assert subject.split(".")[1] == "blue", subject
        assert "ev.blue.job.*.started" in perms["publish"]["allow"]
        assert not any("submitted" in s or "dispatched" in s for s in perms["publish"]["allow"])


def test_tokens_pull_only_their_own_domains_registered_workers() -> None:
    blue, _ = domain("blue", None)
    green, _ = domain("green", None)
    workers = {"blue": {"w1"}, "green": {"w1", "w2"}}
    parsed = accounts(render({"jobstream": "pw"}, {"blue": blue, "green": green}, NOW, workers))  # type: ignore[dict-item]
    by_domain = {}
    for user in parsed["TENANTS"]["users"]:
        allow = user["permissions"]["publish"]["allow"]
        by_domain[allow[0].split(".")[1]] = [s for s in allow if s.startswith("$JS.")]
    assert by_domain["blue"] == [
        "$JS.API.CONSUMER.MSG.NEXT.EVENTS.worker:blue:w1",
        "$JS.ACK.EVENTS.worker:blue:w1.>",
    ]
    assert len(by_domain["green"]) == 4 and not any("blue" in s for s in by_domain["green"])


def test_tenants_reach_the_streams_only_through_imports_the_services_export() -> None:
    parsed = accounts(render({"jobstream": "pw"}, {}, NOW))
    jobs, tenants = parsed["JOBSTREAM"], parsed["TENANTS"]
    assert jobs["jetstream"] == "enabled" and "jetstream" not in tenants
    exported = {e.get("stream") or e.get("service") for e in jobs["exports"]}
    for item in tenants["imports"]:
        subject = (item.get("stream") or item.get("service"))["subject"]
        assert subject in exported or (subject.startswith("in.") and "in.>" in exported), subject
        # Nothing a token publishes lands in a stream directly: stream subjects go via the ingress.
        if "service" in item and subject.split(".")[0] in ("ev", "hb", "log"):
            raise AssertionError(f"{subject} would reach a stream without the ingress")
    assert not any(
        str(s).startswith(("$JS.API.STREAM", "$JS.API.CONSUMER.CREATE", "$JS.API.DIRECT")) for s in exported
    )


def test_next_change_is_the_next_expiry() -> None:
    blue, _ = domain("blue", None, NOW + timedelta(minutes=5), NOW + timedelta(minutes=1))
    assert next_change({"blue": blue}, NOW) == NOW + timedelta(minutes=1)  # type: ignore[dict-item]
    assert next_change({}, NOW) is None


def test_nats_url_of_a_domain_token() -> None:
    import pytest
    import typer

    from services.cli.admin_commands import nats_login_url

    url = nats_login_url("jst_01abc_s3cr3t-x", "nats://jobstream:pw@127.0.0.1:4333")
    assert url == "nats://jst_01abc:s3cr3t-x@127.0.0.1:4333"
    assert nats_login_url("jst_i_s", "localhost:4222") == "nats://jst_i:s@localhost:4222"
    for bad_token, bad_server in (("nope", "nats://h:1"), ("jst_i_s", "http://h:1")):
        with pytest.raises(typer.Exit):
            nats_login_url(bad_token, bad_server)


def test_the_rendered_config_is_checked_by_nats_server_before_a_reload(tmp_path: Path) -> None:
    from services.runtime.nats_server import config_problem

    blue, _ = domain("blue", None)
    good = render({"jobstream": "pw"}, {"blue": blue}, NOW, {"blue": {"w1"}})  # type: ignore[dict-item]
    assert config_problem(good, tmp_path / "check.conf") is None
    bad = good.replace(':w1"', ':w\\u00e9"', 1)  # what an unchecked worker id could have produced
    problem = config_problem(bad, tmp_path / "check.conf")
    assert problem is not None and "escape" in problem
    assert not (tmp_path / "check.conf").exists()


def test_service_logins_are_rendered_as_bcrypt_hashes_only() -> None:
    from services.runtime.broker_auth import is_bcrypt, password_hash

    text = render({"jobstream": "plain-service-password"}, {}, NOW)
    assert "plain-service-password" not in text
    (service,) = accounts(text)["JOBSTREAM"]["users"]
    assert is_bcrypt(service["password"])
    assert bcrypt.checkpw(b"plain-service-password", service["password"].encode())
    # A hash is passed through, so a caller that hashes once renders the same text every time.
    hashed = password_hash("plain-service-password")
    assert password_hash(hashed) == hashed
    assert render({"jobstream": hashed}, {}, NOW) == render({"jobstream": hashed}, {}, NOW)
