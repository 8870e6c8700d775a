"""API settings: one object, built from flags and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH_BODY_BYTES = 32 * 1024 * 1024
MAX_BATCH_JOBS = 1000
READ_YOUR_WRITES_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ApiSettings:
    nats_url: str
    db_path: Path
    admin_token: str
    default_domain: str = "prod"
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_s: float = 1000.0
    rate_limit_burst: float = 2000.0
    streams_per_token: int = 20

    @staticmethod
    def from_env(nats_url: str, db_path: Path, admin_token: str | None = None) -> ApiSettings:
        token = admin_token or os.environ.get("ADMIN_TOKEN")
        if not token:
            raise ValueError("the API needs an admin token: set ADMIN_TOKEN")
        origins = tuple(o for o in os.environ.get("CORS_ALLOW_ORIGINS", "").split(",") if o)
        return ApiSettings(
            nats_url=nats_url, db_path=db_path, admin_token=token, cors_origins=origins,
            rate_limit_per_s=_number("RATE_LIMIT_PER_S", 1000.0),
            rate_limit_burst=_number("RATE_LIMIT_BURST", 2000.0),
            streams_per_token=int(_number("STREAMS_PER_TOKEN", 20)),
        )  # fmt: skip


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must not be negative (0 turns the limit off)")
    return value
