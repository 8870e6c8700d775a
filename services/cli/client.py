"""A small synchronous client of the REST API for the CLI, with errors that say what to do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
TIMEOUT_S = 30.0
DOWNLOAD_READ_S = 300.0  # a snapshot is copied before its first byte is sent

# Exit codes the CLI uses, so scripts can tell failures apart.
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5
EXIT_WAIT_TIMEOUT = 6  # `submit --wait --wait-timeout`: the job had not ended in time
EXIT_NOT_YET_SHOWN = 7  # the write landed in the log, but the read model does not show it yet


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Client:
    url: str
    token: str | None

    @staticmethod
    def from_env(url: str | None = None, token: str | None = None) -> Client:
        return Client(base_url(url or os.environ.get("JOBSTREAM_URL") or DEFAULT_URL),
                      token or os.environ.get("JOBSTREAM_TOKEN"))  # fmt: skip

    def _http(self) -> httpx.Client:
        if self.token and not (self.token.isascii() and self.token.isprintable() and " " not in self.token):
            raise ClientError(
                "the token holds characters no jobstream token has (pasted a placeholder like jst_…?); "
                "set JOBSTREAM_TOKEN or --token to the whole token",
                EXIT_AUTH,
            )
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if os.environ.get("JOBSTREAM_DOMAIN"):
            # The admin token acts in `prod` unless told otherwise; a domain token ignores this.
            headers["X-Domain"] = os.environ["JOBSTREAM_DOMAIN"]
        return httpx.Client(base_url=f"{self.url}{API_PREFIX}", headers=headers, timeout=TIMEOUT_S)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            with self._http() as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the jobstream API at {self.url} ({exc}); is it running? set JOBSTREAM_URL",
                EXIT_UNAVAILABLE,
            ) from exc
        _raise_for(response, self)
        body = response.json() if response.content else None
        if response.status_code == 202 and isinstance(body, dict) and body.get("accepted") is True:
            raise not_yet_shown(body)
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers or {})

    def download(self, path: str, to: Path) -> None:
        """A file the API sends, streamed to `to` (a large body never held in memory)."""
        try:
            with (
                self._http() as http,
                http.stream("GET", path, timeout=httpx.Timeout(TIMEOUT_S, read=DOWNLOAD_READ_S)) as r,
            ):
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r, self)
                with to.open("wb") as out:
                    for chunk in r.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot download {path} from {self.url}: {exc}", EXIT_UNAVAILABLE) from exc

    def sse(self, path: str, **params: Any) -> Iterator[tuple[str, Any]]:
        """Server-Sent Events as (event, decoded data) pairs until the server ends the stream."""
        for _, event, data in self.sse_raw(path, **params):
            yield event, json.loads(data)

    def sse_raw(self, path: str, **params: Any) -> Iterator[tuple[str, str, str]]:
        """Server-Sent Events as (id, event, data) text, as the server framed them."""
        try:
            with (
                self._http() as http,
                http.stream("GET", path, params=params, timeout=httpx.Timeout(TIMEOUT_S, read=None)) as r,
            ):
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r, self)
                id_, event, data = "", "message", list[str]()
                for line in r.iter_lines():
                    if not line:
                        if data:
                            yield id_, event, "\n".join(data)
                        id_, event, data = "", "message", []
                    elif line.startswith("id:"):
                        id_ = line[3:].strip()
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except httpx.HTTPError as exc:
            raise ClientError(f"lost the stream from {self.url}: {exc}", EXIT_UNAVAILABLE) from exc


def not_yet_shown(body: dict[str, Any]) -> ClientError:
    """A 202: the write is in the log, so it must not be sent again; what it made (a job's id, a
    token shown once) is in the message, since the read model cannot show it yet."""
    made = {k: v for k, v in body.items() if k not in ("accepted", "detail")}
    return ClientError(f"{body.get('detail', 'accepted')} — {json.dumps(made)}", EXIT_NOT_YET_SHOWN)


def base_url(url: str) -> str:
    """The server's root: the banner prints `…/api/v1`, and users paste it as it is."""
    url = url.strip().rstrip("/")
    return url.removesuffix(API_PREFIX).rstrip("/")


def not_jobstream(client: Client, status: int) -> ClientError:
    return ClientError(
        f"{client.url} is not a jobstream API base URL (it answered {status} without jobstream's "
        "error body); set JOBSTREAM_URL or --url to the URL `jobstream up` prints, e.g. http://127.0.0.1:8000",
        EXIT_UNAVAILABLE,
    )


def _raise_for(response: httpx.Response, client: Client) -> None:
    if response.status_code < 400:
        return
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        raise not_jobstream(client, status) from None
    if not isinstance(body, dict) or "detail" not in body or body["detail"] == "Not Found":
        # FastAPI's bare "Not Found" means no such route: every jobstream 404 names what is missing.
        raise not_jobstream(client, status)
    detail = body["detail"]
    if status == 401:
        hint = "" if client.token else " (set JOBSTREAM_TOKEN)"
        raise ClientError(f"not authorized: {detail}{hint}", EXIT_AUTH)
    if status == 403:
        raise ClientError(f"forbidden: {detail}", EXIT_AUTH)
    if status == 404:
        raise ClientError(str(detail), EXIT_NOT_FOUND)
    if status in (400, 409, 413, 422):
        raise ClientError(str(detail), EXIT_BAD_INPUT)
    raise ClientError(f"the API answered {status}: {detail}", EXIT_UNAVAILABLE)
