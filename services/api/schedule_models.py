"""Request models of the schedule routes; converted to ScheduleSpec, whose rules then check the trigger."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from events.job import JobSpec
from events.schedule import CatchupPolicy, OverlapPolicy, ScheduleSpec
from services.api.models import MAX_LABELS, JobIn, Strict, TemplateJobIn

MAX_INTERVAL_S = 10 * 366 * 86400.0
MAX_WINDOW_S = 366 * 86400.0


class ScheduleIn(Strict):
    """A schedule as submitted: a full job spec plus exactly one of cron or interval_s."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    job: JobIn | None = None
    template: TemplateJobIn | None = Field(
        default=None, description="instead of job: a template (version pinned at save) with overrides"
    )
    cron: Annotated[str | None, Field(max_length=200, description="5 fields, or 6 with seconds first")] = None
    interval_s: Annotated[float | None, Field(gt=0, le=MAX_INTERVAL_S)] = None
    timezone: Annotated[str, Field(min_length=1, max_length=64, description="IANA zone")] = "UTC"
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    jitter_s: Annotated[float, Field(ge=0, le=86400)] = 0.0
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    catchup_policy: CatchupPolicy = CatchupPolicy.NONE
    catchup_window_s: Annotated[float, Field(ge=0, le=MAX_WINDOW_S)] = 3600.0
    max_catchup: Annotated[int, Field(ge=0, le=1000)] = 100
    misfire_grace_s: Annotated[float, Field(ge=0, le=86400)] = 60.0
    paused: bool = False
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)

    @model_validator(mode="after")
    def _job_or_template(self) -> ScheduleIn:
        if (self.job is None) == (self.template is None):
            raise ValueError("give exactly one of job or template")
        return self

    def to_spec(self, resolved: tuple[JobSpec, str | None] | None = None) -> ScheduleSpec:
        """`resolved`: the template's spec and reference, when the schedule names a template."""
        if self.job is not None:
            job, ref = self.job.to_spec(), None
        else:
            assert resolved is not None, "a template schedule needs its template resolved first"
            job, ref = resolved
        return ScheduleSpec(
            name=self.name, job=job, template=ref, cron=self.cron, interval_s=self.interval_s,
            timezone=self.timezone, start_at=self.start_at, end_at=self.end_at, jitter_s=self.jitter_s,
            overlap_policy=self.overlap_policy, catchup_policy=self.catchup_policy,
            catchup_window_s=self.catchup_window_s, max_catchup=self.max_catchup,
            misfire_grace_s=self.misfire_grace_s, paused=self.paused, labels=self.labels,
        )  # fmt: skip


class SchedulePatch(Strict):
    """Fields to change; the others keep their values. `cron` and `interval_s` replace each other."""

    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    job: JobIn | None = None
    template: TemplateJobIn | None = None
    cron: Annotated[str | None, Field(max_length=200)] = None
    interval_s: Annotated[float | None, Field(gt=0, le=MAX_INTERVAL_S)] = None
    timezone: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    jitter_s: Annotated[float | None, Field(ge=0, le=86400)] = None
    overlap_policy: OverlapPolicy | None = None
    catchup_policy: CatchupPolicy | None = None
    catchup_window_s: Annotated[float | None, Field(ge=0, le=MAX_WINDOW_S)] = None
    max_catchup: Annotated[int | None, Field(ge=0, le=1000)] = None
    misfire_grace_s: Annotated[float | None, Field(ge=0, le=86400)] = None
    labels: dict[str, str] | None = Field(default=None, max_length=MAX_LABELS)

    def merge(self, current: dict[str, Any]) -> ScheduleIn:
        """The current spec (as builtins) with these changes, validated as a whole."""
        changes = self.model_dump(exclude_unset=True)
        if "cron" in changes:
            current.pop("interval_s", None)
        if "interval_s" in changes:
            current.pop("cron", None)
        if "job" in changes and self.job is not None:
            changes["job"] = self.job.model_dump(exclude_unset=True)
        if self.template is not None:
            current.pop("job", None)
            changes["template"] = self.template.model_dump(exclude_unset=True)
        current.pop("template", None)  # the stored "name@version"; the route carries it over
        current.pop("paused", None)
        return ScheduleIn.model_validate({**current, **changes})


class NoteIn(Strict):
    note: Annotated[str, Field(max_length=1000)] = ""


class BackfillIn(Strict):
    start: AwareDatetime
    end: AwareDatetime
    overlap_policy: Literal["allow", "queue"] = Field(
        default="allow", description="allow: every tick's job at once; queue: one after another"
    )


class BackfillOut(BaseModel):
    ticks: int
    fired: list[str]
    existing: list[str]
    queued: list[datetime]


class SchedulePage(BaseModel):
    items: list[dict[str, Any]]
    next_before: int | None = None
