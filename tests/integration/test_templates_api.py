"""Job templates: versions, jobs made from them with overrides, and their refusals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client, last_seq

V1 = "/api/v1"
REPORT = {"name": "report", "executor": {"type": "shell", "script": "./report.sh"}, "timeout_s": 60}


@pytest.fixture(scope="module")
def api(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(nats_server.url, tmp_path_factory.mktemp("templates-api")) as client:
        yield client


def test_versions_and_jobs_from_templates(api: TestClient, nats_server: NatsServer) -> None:
    r = api.put(f"{V1}/templates/report", json={"job": REPORT, "description": "daily"}, headers=AUTH)
    assert r.status_code == 201 and r.json()["latest_version"] == 1, r.text
    seq = last_seq(nats_server.url)
    same = api.put(f"{V1}/templates/report", json={"job": REPORT, "description": "daily"}, headers=AUTH)
    assert same.status_code == 200 and last_seq(nats_server.url) == seq  # unchanged: no new version
    v2 = api.put(f"{V1}/templates/report", json={"job": {**REPORT, "timeout_s": 120}}, headers=AUTH)
    assert v2.status_code == 201 and v2.json()["latest_version"] == 2

    job = api.post(f"{V1}/jobs", json={"template": "report"}, headers=AUTH).json()
    assert job["template"] == "report@2" and job["spec"]["timeout_s"] == 120
    old = api.post(f"{V1}/jobs", json={"template": "report", "version": 1}, headers=AUTH).json()
    assert old["template"] == "report@1" and old["spec"]["timeout_s"] == 60
    custom = api.post(
        f"{V1}/jobs", json={"template": "report", "overrides": {"timeout_s": 5, "env": {"DAY": "mon"}}},
        headers=AUTH,
    ).json()  # fmt: skip
    assert custom["spec"]["timeout_s"] == 5 and custom["spec"]["env"] == {"DAY": "mon"}
    batch = api.post(f"{V1}/jobs/batch", json={"jobs": [{"template": "report"}, REPORT]}, headers=AUTH)
    assert batch.status_code == 201 and batch.json()["created"] == 2
    assert api.get(f"{V1}/templates/report/versions/1", headers=AUTH).json()["job"]["timeout_s"] == 60
    assert [t["name"] for t in api.get(f"{V1}/templates", headers=AUTH).json()] == ["report"]


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"template": "report", "overrides": {"timeout_s": -1}}, 422, "overrides: timeout_s"),
        ({"template": "report", "overrides": {"colour": "blue"}}, 422, "colour"),
        ({"template": "nope"}, 404, "nope"),
        ({"template": "report", "version": 99}, 404, "99"),
        ({"template": "bad name!"}, 422, "template"),
        ({"template": "report", "extra": 1}, 422, "extra"),
    ],
)
def test_bad_template_jobs_are_refused_and_append_nothing(
    api: TestClient, nats_server: NatsServer, body: dict[str, object], status: int, named: str
) -> None:
    api.put(f"{V1}/templates/report", json={"job": REPORT}, headers=AUTH)
    before = last_seq(nats_server.url)
    r = api.post(f"{V1}/jobs", json=body, headers=AUTH)
    assert r.status_code == status and named in r.json()["detail"], r.text
    assert last_seq(nats_server.url) == before


def test_templates_belong_to_their_domain_and_can_be_deleted(api: TestClient) -> None:
    api.put(f"{V1}/templates/mine", json={"job": REPORT}, headers=AUTH)
    other = api.post(f"{V1}/admin/domains", json={"name": "elsewhere"}, headers=AUTH).json()["token"]["token"]
    r = api.post(f"{V1}/jobs", json={"template": "mine"}, headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404
    job = api.post(f"{V1}/jobs", json={"template": "mine"}, headers=AUTH).json()
    assert api.delete(f"{V1}/templates/mine", headers=AUTH).json()["status"] == "deleted"
    assert api.get(f"{V1}/templates/mine", headers=AUTH).status_code == 404
    assert api.post(f"{V1}/jobs", json={"template": "mine"}, headers=AUTH).status_code == 404
    assert api.get(f"{V1}/jobs/{job['id']}", headers=AUTH).json()["spec"]["name"] == "report"
    again = api.put(f"{V1}/templates/mine", json={"job": REPORT}, headers=AUTH)
    assert again.status_code == 201 and again.json()["latest_version"] == 2  # versions go on after a delete


def test_schedules_can_run_a_template_pinned_at_save(api: TestClient) -> None:
    api.put(f"{V1}/templates/nightly", json={"job": REPORT}, headers=AUTH)
    body = {"name": "from-template", "interval_s": 3600, "template": {"template": "nightly",
            "overrides": {"timeout_s": 30}}}  # fmt: skip
    r = api.post(f"{V1}/schedules", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["spec"]["template"] == "nightly@1" and r.json()["spec"]["job"]["timeout_s"] == 30
    api.put(f"{V1}/templates/nightly", json={"job": {**REPORT, "timeout_s": 999}}, headers=AUTH)
    assert api.get(f"{V1}/schedules/{sid}", headers=AUTH).json()["spec"]["job"]["timeout_s"] == 30  # pinned
    job_id = api.post(f"{V1}/schedules/{sid}/run-now", headers=AUTH).json()["job_id"]
    assert api.get(f"{V1}/jobs/{job_id}", headers=AUTH).json()["spec"]["timeout_s"] == 30
    moved = api.patch(f"{V1}/schedules/{sid}", json={"template": {"template": "nightly"}}, headers=AUTH)
    assert moved.json()["spec"]["template"] == "nightly@2" and moved.json()["spec"]["job"]["timeout_s"] == 999
    kept = api.patch(f"{V1}/schedules/{sid}", json={"jitter_s": 1}, headers=AUTH)
    assert kept.json()["spec"]["template"] == "nightly@2"
    both = api.post(f"{V1}/schedules", json={**body, "name": "x", "job": REPORT}, headers=AUTH)
    assert both.status_code == 422 and "exactly one of job or template" in both.json()["detail"]
    missing = api.post(f"{V1}/schedules", json={**body, "name": "y", "template": {"template": "nope"}},
                       headers=AUTH)  # fmt: skip
    assert missing.status_code == 404
