"""The template aggregate: a named job spec in a domain, versioned; jobs and schedules may use one.

Saving the same spec again is not a new version, so a deploy script can save its
templates on every run. Events live on `ev.<domain>.template.<name>.<type>`.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec import structs

from events.base import Conflict, DomainError, Event, NotFound
from events.ids import is_token
from events.job import JobSpec


class TemplateEvent(Event, frozen=True, kw_only=True):
    template: str


class TemplateSaved(TemplateEvent, frozen=True, kw_only=True, tag="saved"):
    version: int
    spec: JobSpec
    description: str = ""


class TemplateDeleted(TemplateEvent, frozen=True, kw_only=True, tag="deleted"):
    pass


AnyTemplateEvent = TemplateSaved | TemplateDeleted


class TemplateVersion(msgspec.Struct, frozen=True, omit_defaults=True):
    version: int
    spec: JobSpec
    saved_at: datetime
    saved_by: str
    description: str = ""


class TemplateState(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    domain: str
    versions: tuple[TemplateVersion, ...]
    updated_at: datetime
    deleted: bool = False

    @property
    def latest(self) -> TemplateVersion:
        return self.versions[-1]

    def version(self, n: int | None) -> TemplateVersion:
        if n is None:
            return self.latest
        found = next((v for v in self.versions if v.version == n), None)
        if found is None:
            raise NotFound(f"template {self.name} has no version {n} (latest is {self.latest.version})")
        return found


def evolve_template(state: TemplateState | None, event: AnyTemplateEvent) -> TemplateState | None:
    """Fold one event into a template's state. Never raises; a deleted name may be saved anew."""
    match event:
        case TemplateSaved(version=version, spec=spec, description=description):
            saved = TemplateVersion(version, spec, event.at, event.actor, description)
            if state is None or state.deleted:
                return TemplateState(event.template, event.domain, (saved,), event.at)
            return structs.replace(state, versions=(*state.versions, saved), updated_at=event.at)
        case TemplateDeleted():
            if state is None:
                return None
            return structs.replace(state, deleted=True, updated_at=event.at)
    return state


def decide_save(
    state: TemplateState | None, domain: str, name: str, spec: JobSpec, actor: str, description: str = ""
) -> TemplateSaved | None:
    """The next version, or None when the latest version already is this spec."""
    if not is_token(name):
        raise DomainError(f"name: {name!r} must be 1-128 letters, digits, _ or -")
    if state is not None and not state.deleted:
        if state.latest.spec == spec and state.latest.description == description:
            return None
        version = state.latest.version + 1
    else:
        version = (state.latest.version + 1) if state is not None else 1
    return TemplateSaved(
        domain=domain, actor=actor, template=name, correlation_id=name, version=version, spec=spec,
        description=description,
    )  # fmt: skip


def decide_delete(state: TemplateState, actor: str) -> TemplateDeleted:
    if state.deleted:
        raise Conflict(f"template {state.name} was deleted already")
    return TemplateDeleted(domain=state.domain, actor=actor, template=state.name, correlation_id=state.name)
