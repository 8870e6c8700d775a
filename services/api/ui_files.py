"""The web UI's built files (services/api/ui_dist, made by `npm run build` in ui/, shipped in
the package), served at `/` beside the API.

The UI routes in the browser (/jobs/ID, /schedules, …): a path that names no file gets
index.html, so a deep link or a reload works; an unknown path under the API, or a missing
asset (a name with a dot), stays a 404. Without a build, `/` says how to make one.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_DIST = Path(__file__).resolve().parent / "ui_dist"
NOT_BUILT = (
    "<!doctype html><title>jobstream</title><h1>jobstream</h1><p>The web UI is not built. "
    "<code>./dev up</code> builds it (<code>npm ci && npm run build</code> in <code>ui/</code>); "
    "the API is at <a href='/api/v1/docs'>/api/v1/docs</a>.</p>"
)


class SinglePageApp(StaticFiles):
    """StaticFiles with the browser router's fallback to index.html."""

    def __init__(self, directory: Path, api_prefix: str) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self.api_prefix = api_prefix
        self.built = (directory / "index.html").is_file()

    async def check_config(self) -> None:
        if self.built:  # no directory to check before a build
            await super().check_config()

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not self.built:
            if scope["path"] == "/":
                return HTMLResponse(NOT_BUILT, status_code=404)
            raise HTTPException(404)
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not self._is_page(scope["path"]):
                raise
            response = await super().get_response("index.html", scope)
        if path.startswith("assets/"):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"  # hashed names
        elif response.media_type == "text/html":
            response.headers["Cache-Control"] = "no-cache"
        return response

    def _is_page(self, path: str) -> bool:
        last = path.rsplit("/", 1)[-1]
        return not path.startswith(self.api_prefix) and "." not in last
