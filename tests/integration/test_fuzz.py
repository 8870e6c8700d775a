"""Every route of the OpenAPI schema, fuzzed with schemathesis against a real API process.

With the admin token: no 5xx, nothing invalid accepted, and a refused request leaves
the event log as it was. Without a token: 401 everywhere but the open probes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.generation import GenerationMode

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port
from tests.e2e.system import TOKEN, System
from tests.integration.inprocess import last_seq

pytestmark = pytest.mark.slow

OPEN = {"/health", "/ready", "/metrics"}
STREAMING = "/api/v1/events"  # an endless SSE stream: nothing to fuzz that would end


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    nats = NatsServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()
    system = System(tmp, nats)
    system.extra_env = {"RATE_LIMIT_PER_S": "0"}
    try:
        system.start_api()
        yield system
    finally:
        system.shutdown()
        nats.stop()


def _load_schema() -> Any:
    """The schema the API serves, built without starting it (no NATS needed to describe it)."""
    app = create_app(ApiSettings(nats_url="nats://127.0.0.1:1", db_path=Path("unused"), admin_token="x"))
    loaded = schemathesis.openapi.from_dict(app.openapi())
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return loaded.exclude(path=STREAMING)


schema = _load_schema()


@schema.parametrize()
@hypothesis.settings(max_examples=12, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_admin_token_no_5xx_and_refusals_append_nothing(case: Any, fuzzed: System) -> None:
    before = last_seq(fuzzed.nats.url)
    response = case.call(base_url=fuzzed.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    if response.status_code >= 400:
        assert last_seq(fuzzed.nats.url) == before, f"refused {case.method} {case.formatted_path} appended"
    negative = case.meta is not None and case.meta.generation.mode is GenerationMode.NEGATIVE
    # A case whose invalid part is its Authorization header was made valid by ours above.
    negative = negative and "Authorization" not in (case.headers or {})
    if negative and response.status_code < 400 and case.path not in OPEN:  # probes take no input
        raise AssertionError(
            f"invalid input accepted: {case.method} {case.formatted_path} query={case.query} "
            f"headers={case.headers} body={case.body!r}: {response.status_code}"
        )


@schema.parametrize()
@hypothesis.settings(max_examples=4, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_without_a_token_everything_is_401(case: Any, fuzzed: System) -> None:
    response = case.call(base_url=fuzzed.api_url, headers={"Authorization": ""}, timeout=30)
    if case.path in OPEN:
        assert response.status_code < 500
    elif case.method.upper() != case.operation.method.upper():
        assert response.status_code in (401, 405)  # a method the route does not have
    else:
        assert response.status_code == 401, f"{case.method} {case.formatted_path}: {response.status_code}"
