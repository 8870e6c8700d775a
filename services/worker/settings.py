"""Worker settings from flags or the seeds' environment names."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from events.domain import parse_token
from events.ids import is_domain, is_token
from events.worker import (
    ADMIN_STATES,
    FENCE_DISCONNECTED_S,
    FENCE_UNACKED_S,
    HEARTBEAT_INTERVAL_S,
    AdminState,
)
from services.worker.logsink import (
    DEFAULT_OUTPUT_BURST_LINES,
    DEFAULT_OUTPUT_LINES_PER_S,
    DEFAULT_OUTPUT_MAX_BYTES,
    DEFAULT_OUTPUT_MAX_LINES,
    OutputLimits,
)

DEFAULT_GRACE_S = 30.0
DEFAULT_MAX_CONCURRENCY = 4


class SettingsError(ValueError):
    pass


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@dataclass(frozen=True)
class WorkerSettings:
    nats_url: str
    worker_id: str
    domain: str = "prod"
    tags: list[str] = field(default_factory=list)
    allowed_users: list[str] = field(default_factory=list)
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    executors: list[str] = field(default_factory=lambda: ["shell", "python"])
    grace_s: float = DEFAULT_GRACE_S
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    # When to stop our jobs because the dispatcher may give them away (see liveness.py).
    fence_disconnected_s: float = FENCE_DISCONNECTED_S
    fence_unacked_s: float = FENCE_UNACKED_S
    token: str | None = None
    # Per-attempt output caps (lines/s sustained, burst lines, bytes, lines): see logsink.
    output_lines_per_s: float = DEFAULT_OUTPUT_LINES_PER_S
    output_burst_lines: int = DEFAULT_OUTPUT_BURST_LINES
    output_max_bytes: int = DEFAULT_OUTPUT_MAX_BYTES
    output_max_lines: int = DEFAULT_OUTPUT_MAX_LINES
    # `WORKER_STATE`: the state it registers in (active, draining, disabled); None (unset): the
    # one an operator last set for this worker id stays, `active` for a new id.
    start_state: AdminState | None = None

    def __post_init__(self) -> None:
        if self.start_state is not None and self.start_state not in ADMIN_STATES:
            raise SettingsError(
                f"WORKER_STATE must be one of {', '.join(ADMIN_STATES)}, got {self.start_state!r}"
            )
        if not is_token(self.worker_id):
            raise SettingsError(f"worker id {self.worker_id!r} may only hold letters, digits, '_' and '-'")
        if not is_domain(self.domain):
            raise SettingsError(f"domain {self.domain!r} is not a valid domain name")
        if self.max_concurrency < 1:
            raise SettingsError(f"max concurrency must be at least 1, got {self.max_concurrency}")
        if self.grace_s < 0:
            raise SettingsError(f"grace period must not be negative, got {self.grace_s}")
        unknown = set(self.executors) - {"shell", "python"}
        if unknown:
            raise SettingsError(f"unknown executors: {', '.join(sorted(unknown))}")
        if (
            self.output_lines_per_s <= 0
            or min(self.output_burst_lines, self.output_max_bytes, self.output_max_lines) < 1
        ):
            raise SettingsError("output caps must be positive")
        if self.token is not None and parse_token(self.token) is None:
            raise SettingsError(
                "WORKER_DOMAIN_TOKEN/API_TOKEN is not a domain token (they look like jst_<id>_<secret>)"
            )

    @property
    def output_limits(self) -> OutputLimits:
        return OutputLimits(
            self.output_lines_per_s, self.output_burst_lines, self.output_max_bytes, self.output_max_lines
        )

    @property
    def login(self) -> tuple[str, str] | None:
        """The broker login of the domain token, if the worker runs with one."""
        parsed = parse_token(self.token) if self.token else None
        return (f"jst_{parsed[0]}", parsed[1]) if parsed else None

    @property
    def server_url(self) -> str:
        """NATS_URL, without any login in it when a domain token supplies the login."""
        if self.login is None:
            return self.nats_url
        return ",".join(_without_userinfo(u) for u in self.nats_url.split(","))


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return float(value.replace("_", ""))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {value!r}") from exc


def _env_state(name: str) -> AdminState | None:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    state = value.strip().lower()
    if state not in ADMIN_STATES:
        raise SettingsError(f"{name} must be one of {', '.join(ADMIN_STATES)}, got {value!r}")
    return state  # type: ignore[return-value]


def default_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host}-{os.getpid()}"


def from_env(
    nats_url: str | None = None,
    worker_id: str | None = None,
    domain: str | None = None,
    tags: str | None = None,
    allowed_users: str | None = None,
    max_concurrency: int | None = None,
    grace_s: float | None = None,
) -> WorkerSettings:
    """Flags win over the environment; the environment over defaults."""
    env = os.environ
    conc = max_concurrency if max_concurrency is not None else env.get("MAX_CONCURRENCY")
    try:
        conc_value = int(conc) if conc is not None else DEFAULT_MAX_CONCURRENCY
    except ValueError as exc:
        raise SettingsError(f"MAX_CONCURRENCY must be an integer, got {conc!r}") from exc
    return WorkerSettings(
        nats_url=nats_url or env.get("NATS_URL", "nats://127.0.0.1:4222"),
        worker_id=worker_id or env.get("WORKER_ID") or default_worker_id(),
        domain=domain or env.get("WORKER_DOMAIN", "prod"),
        tags=_split(tags if tags is not None else env.get("WORKER_TAGS")),
        allowed_users=_split(allowed_users if allowed_users is not None else env.get("ALLOWED_USERS")),
        max_concurrency=conc_value,
        grace_s=grace_s if grace_s is not None else DEFAULT_GRACE_S,
        token=env.get("WORKER_DOMAIN_TOKEN") or env.get("API_TOKEN") or None,
        output_lines_per_s=_env_number("WORKER_OUTPUT_LINES_PER_S", DEFAULT_OUTPUT_LINES_PER_S),
        output_burst_lines=int(_env_number("WORKER_OUTPUT_BURST_LINES", DEFAULT_OUTPUT_BURST_LINES)),
        output_max_bytes=int(_env_number("WORKER_OUTPUT_MAX_BYTES", DEFAULT_OUTPUT_MAX_BYTES)),
        output_max_lines=int(_env_number("WORKER_OUTPUT_MAX_LINES", DEFAULT_OUTPUT_MAX_LINES)),
        start_state=_env_state("WORKER_STATE"),
    )
