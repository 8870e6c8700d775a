"""Request and response models of the REST edge; converted once to the wire structs in events/."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from events.job import Completion, JobSpec, PythonExecutor, ShellExecutor

MAX_SCRIPT_CHARS = 256 * 1024
MAX_ENV_CHARS = 64 * 1024
MAX_LABELS = 64
MAX_TAGS = 32
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_RETRIES = 100
MAX_BACKOFF_S = 3600.0
MAX_CONCURRENCY_LIMIT = 100_000

TAG_RE = re.compile(r"^[A-Za-z0-9_.:/=-]{1,64}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][\w.]*$")
CONCURRENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")


def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShellExecutorIn(Strict):
    type: Literal["shell"]
    script: Annotated[str, Field(min_length=1, max_length=MAX_SCRIPT_CHARS)]
    shell: Literal["sh", "bash"] = "sh"

    @field_validator("script")
    @classmethod
    def _script(cls, v: str) -> str:
        return _no_nul(v, "script")


class PythonExecutorIn(Strict):
    type: Literal["python"]
    script: Annotated[str | None, Field(max_length=MAX_SCRIPT_CHARS)] = None
    module: str | None = None
    callable: str | None = Field(default=None, description='"package.module:function", run in-process')
    args: list[Any] = Field(default_factory=list, max_length=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> PythonExecutorIn:
        given = [k for k in ("script", "module", "callable") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "python executor needs exactly one of script, module or callable"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.script is not None:
            _no_nul(self.script, "script")
        if self.module is not None and not MODULE_RE.match(self.module):
            raise ValueError(f"module {self.module!r} is not a dotted module name")
        if self.callable is not None and not CALLABLE_RE.match(self.callable):
            raise ValueError(f"callable {self.callable!r} must look like 'package.module:function'")
        return self


ExecutorIn = Annotated[ShellExecutorIn | PythonExecutorIn, Field(discriminator="type")]


class CompletionIn(Strict):
    exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=256
    )
    stdout_match: str | None = Field(default=None, max_length=4096)
    stdout_not_match: str | None = Field(default=None, max_length=4096)

    @field_validator("stdout_match", "stdout_not_match")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v


class JobIn(Strict):
    """A job as submitted: the seeds' field names."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    executor: ExecutorIn
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    user: Annotated[str | None, Field(max_length=128)] = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Annotated[str | None, Field(max_length=4096)] = None
    timeout_s: Annotated[float | None, Field(gt=0, le=MAX_TIMEOUT_S)] = None
    max_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 0
    retry_backoff_s: Annotated[float, Field(ge=0, le=MAX_BACKOFF_S)] = 1.0
    completion: CompletionIn | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    concurrency_key: str | None = Field(
        default=None,
        description="jobs sharing this key in a domain run at most `concurrency_limit` at a time",
    )
    concurrency_limit: Annotated[int | None, Field(ge=1, le=MAX_CONCURRENCY_LIMIT)] = Field(
        default=None, description="max dispatched + running jobs with this concurrency_key [1]"
    )
    name_limit: Annotated[int | None, Field(ge=1, le=MAX_CONCURRENCY_LIMIT)] = Field(
        default=None, description="max dispatched + running jobs with this job's name in the domain"
    )

    @field_validator("concurrency_key")
    @classmethod
    def _concurrency_key(cls, v: str | None) -> str | None:
        if v is not None and not CONCURRENCY_KEY_RE.match(v):
            raise ValueError(f"concurrency_key {v[:40]!r} must be 1-128 letters, digits or _.:/-")
        return v

    @field_validator("concurrency_limit")
    @classmethod
    def _limit_needs_key(cls, v: int | None, info: ValidationInfo) -> int | None:
        # Fields validate in order: the key is in info.data unless it was itself invalid.
        if v is not None and "concurrency_key" in info.data and info.data["concurrency_key"] is None:
            raise ValueError(
                "concurrency_limit needs a concurrency_key: the limit applies to jobs sharing it"
            )
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for tag in v:
            if not TAG_RE.match(tag):
                raise ValueError(f"tag {tag!r} must be 1-64 letters, digits or _.:/=-")
        return sorted(set(v))

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        size = 0
        for key, value in v.items():
            if not ENV_KEY_RE.match(key):
                raise ValueError(f"env name {key!r} is not a valid variable name")
            _no_nul(value, f"env value of {key}")
            size += len(key) + len(value)
        if size > MAX_ENV_CHARS:
            raise ValueError(f"env is {size} characters, more than {MAX_ENV_CHARS}")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels, got {len(v)}")
        for key, value in v.items():
            if not key or len(key) > 128 or len(value) > 1024:
                raise ValueError(f"label {key[:40]!r}: keys are 1-128 and values up to 1024 characters")
        return v

    def to_spec(self) -> JobSpec:
        ex = self.executor
        executor: ShellExecutor | PythonExecutor
        if isinstance(ex, ShellExecutorIn):
            executor = ShellExecutor(script=ex.script, shell=ex.shell)
        else:
            executor = PythonExecutor(
                script=ex.script, module=ex.module, callable=ex.callable, args=ex.args, kwargs=ex.kwargs
            )
        completion = None
        if self.completion is not None:
            c = self.completion
            completion = Completion(c.exit_codes, c.stdout_match, c.stdout_not_match)
        return JobSpec(
            name=self.name,
            executor=executor,
            tags=self.tags,
            user=self.user,
            priority=self.priority,
            env=self.env,
            cwd=self.cwd,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            retry_backoff_s=self.retry_backoff_s,
            completion=completion,
            labels=self.labels,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
            name_limit=self.name_limit,
        )


class TemplateJobIn(Strict):
    """A job from a template: its spec (latest version unless `version` is given), with
    `overrides` replacing top-level fields; the result is validated like any job."""

    template: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
    version: Annotated[int | None, Field(ge=1)] = None
    overrides: dict[str, Any] = Field(default_factory=dict)


# Tags of the job-or-template union; error locations drop them (services/api/errors.py), so a
# bad field reads "jobs.5.timeout_s", not "jobs.5.(job).timeout_s".
UNION_TAGS = ("(job)", "(template)")


def _job_kind(value: Any) -> str:
    return UNION_TAGS[1] if isinstance(value, dict) and "template" in value else UNION_TAGS[0]


AnyJobIn = Annotated[
    Annotated[JobIn, Tag(UNION_TAGS[0])] | Annotated[TemplateJobIn, Tag(UNION_TAGS[1])],
    Discriminator(_job_kind),
]


class BatchIn(Strict):
    jobs: list[AnyJobIn] = Field(min_length=1, max_length=1000)


class BatchOut(BaseModel):
    ids: list[str]
    created: int
    existing: int


class CancelIn(Strict):
    reason: Annotated[str, Field(max_length=1000)] = ""


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None
