"""The UI's files beside the API: deep links get index.html, the API's 404s and missing
assets stay 404s, hashed assets are cached for good and pages never."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.api.ui_files import SinglePageApp


def _app(dist: Path) -> TestClient:
    app = FastAPI()

    @app.get("/api/v1/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    app.mount("/", SinglePageApp(dist, "/api/v1"), name="ui")
    return TestClient(app)


def test_pages_fall_back_to_index_and_the_rest_stays_404(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<div id=root></div>")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log(1)")
    client = _app(tmp_path)
    for page in ("/", "/jobs", "/jobs/j-123", "/schedules/"):
        got = client.get(page)
        assert got.status_code == 200 and "root" in got.text, page
        assert got.headers["cache-control"] == "no-cache"
    asset = client.get("/assets/index-abc.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert client.get("/assets/gone-123.js").status_code == 404
    assert client.get("/api/v1/ping").json() == {"pong": "yes"}
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}


def test_without_a_build_the_root_says_how_to_make_one(tmp_path: Path) -> None:
    client = _app(tmp_path / "dist")
    root = client.get("/")
    assert root.status_code == 404 and "./dev up" in root.text
    assert client.get("/jobs").status_code == 404
