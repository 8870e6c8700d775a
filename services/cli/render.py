"""Human output of the CLI: Rich tables and panels; `--json` bypasses all of this."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console
from rich.table import Table

STATUS_STYLE = {
    "pending": "yellow",
    "dispatched": "cyan",
    "running": "blue",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "magenta",
    "active": "green",
    "offline": "red",
    "stopped": "dim",
}


def console() -> Console:
    # Piped output keeps whole ids and lines for grep and awk instead of wrapping at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 250)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def status(value: str | None) -> str:
    if not value:
        return ""
    style = STATUS_STYLE.get(value, "")
    return f"[{style}]{value}[/]" if style else value


def when(value: str | None, zone: str | None = None) -> str:
    """A time in `zone` (a schedule's own) or the viewer's local zone, always with its label:
    a bare 02:00 does not say whether it is UTC or Berlin."""
    if not value:
        return ""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        local = at.astimezone(ZoneInfo(zone)) if zone else at.astimezone()
    except (ZoneInfoNotFoundError, ValueError):
        local = at
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{seconds:.2f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "STATUS", "WORKER", "ATTEMPT", "SUBMITTED", "DURATION"):
        table.add_column(col)
    for job in jobs:
        table.add_row(
            job["id"],
            job["spec"]["name"],
            status(job["status"]),
            job.get("worker_id") or "",
            str(job.get("attempt") or ""),
            when(job.get("submitted_at")),
            duration(job.get("started_at"), job.get("finished_at")),
        )
    return table


def job_detail(job: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    spec = job["spec"]
    executor = spec["executor"]
    what = executor.get("script") or executor.get("module") or executor.get("callable") or ""
    rows = [
        ("id", job["id"]),
        ("name", spec["name"]),
        ("status", status(job["status"])),
        ("executor", f"{executor['type']}: {what[:200]}"),
        ("tags", ", ".join(spec.get("tags") or [])),
        ("worker", job.get("worker_id") or ""),
        ("attempt", str(job.get("attempt") or 0)),
        ("submitted", when(job.get("submitted_at"))),
        ("started", when(job.get("started_at"))),
        ("finished", when(job.get("finished_at"))),
        ("exit code", "" if job.get("exit_code") is None else str(job["exit_code"])),
        ("error", job.get("error") or ""),
        ("pending reason", job.get("pending_reason") or ""),
        ("result", "" if job.get("result") is None else json.dumps(job["result"])[:500]),
        ("retry of", job.get("retry_of") or ""),
        ("trace id", job.get("trace_id") or ""),
    ]
    for key, value in rows:
        if value:
            table.add_row(key, value)
    return table


def attempts_table(job: dict[str, Any]) -> Table:
    table = Table(title="attempts", box=None, header_style="bold", title_justify="left")
    for col in ("#", "WORKER", "STATUS", "STARTED", "FINISHED", "EXIT", "ERROR"):
        table.add_column(col)
    for a in job.get("attempts") or []:
        table.add_row(
            str(a["n"]),
            a["worker_id"],
            status(a["status"]),
            when(a.get("started_at")),
            when(a.get("finished_at")),
            "" if a.get("exit_code") is None else str(a["exit_code"]),
            (a.get("error") or "")[:80],
        )
    return table


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("SEQ", "TYPE", "AT", "ACTOR", "DETAIL"):
        table.add_column(col)
    skip = {"seq", "subject", "type", "at", "actor", "id", "v", "domain", "job_id", "correlation_id"}
    for e in events:
        detail = {k: v for k, v in e.items() if k not in skip and k != "spec" and v not in (None, "", [])}
        table.add_row(
            str(e["seq"]), e["type"], when(e.get("at")), e.get("actor", ""), json.dumps(detail)[:100]
        )
    return table


def _admin_note(w: dict[str, Any]) -> str:
    """` (draining)` while it shuts down or an operator drains it, ` (disabled)` when disabled."""
    admin = w.get("admin_state") or "active"
    if admin != "active":
        return f" ({admin})"
    return " (draining)" if w.get("draining") else ""


def workers_table(workers: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "STATUS", "RUNNING", "TAGS", "EXECUTORS", "HOST", "LAST HEARTBEAT"):
        table.add_column(col)
    for w in workers:
        table.add_row(
            w["id"],
            status(w["status"]) + _admin_note(w),
            # None as of a past sequence: running jobs are heartbeats, not events, so unknown then.
            f"{'-' if w.get('active_jobs', 0) is None else w.get('active_jobs', 0)}/{w['max_concurrency']}",
            ", ".join(w.get("tags") or []),
            ", ".join(w.get("executors") or []),
            (w.get("host") or {}).get("hostname", ""),
            when(w.get("last_heartbeat_at")),
        )
    return table


def _trigger(spec: dict[str, Any]) -> str:
    if spec.get("cron"):
        return f"cron {spec['cron']} ({spec.get('timezone', 'UTC')})"
    return f"every {spec.get('interval_s')}s"


def schedules_table(schedules: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "STATUS", "TRIGGER", "OVERLAP", "NEXT FIRE", "LAST FIRED", "FIRED", "SKIPPED"):
        table.add_column(col)
    for s in schedules:
        spec = s["spec"]
        zone = spec.get("timezone")
        table.add_row(
            s["id"], spec["name"], status(s["status"]), _trigger(spec), spec.get("overlap_policy", ""),
            when(s.get("next_fire_at"), zone), when(s.get("last_fired_at"), zone), str(s.get("fired", 0)),
            str(s.get("skipped", 0) + s.get("missed", 0)),
        )  # fmt: skip
    return table


def schedule_detail(s: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    spec = s["spec"]
    zone = spec.get("timezone")
    rows = [
        ("id", s["id"]), ("name", spec["name"]), ("status", status(s["status"])),
        ("trigger", _trigger(spec)), ("job", spec["job"]["name"]),
        ("overlap", spec.get("overlap_policy", "")), ("catch-up", spec.get("catchup_policy", "")),
        ("jitter", f"{spec.get('jitter_s', 0)}s"), ("next fire", when(s.get("next_fire_at"), zone)),
        ("last fired", when(s.get("last_fired_at"), zone)), ("last job", s.get("last_job_id") or ""),
        ("fired / skipped / missed", f"{s.get('fired', 0)} / {s.get('skipped', 0)} / {s.get('missed', 0)}"),
        ("waiting", str(len(s.get("waiting") or []))),
    ]  # fmt: skip
    if s.get("pause_note"):
        rows.append(("pause note", s["pause_note"]))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("TICK", "OUTCOME", "FIRED", "LATENESS", "JOB", "JOB STATUS", "REASON"):
        table.add_column(col)
    for r in runs:
        late = r.get("lateness_s")
        table.add_row(
            when(r.get("tick")), r["outcome"], when(r.get("fired_at")),
            f"{late * 1000:.0f} ms" if late is not None else "", r.get("job_id") or "",
            status(r.get("job_status")), r.get("reason") or "",
        )  # fmt: skip
    return table


def preview_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("LOCAL", "UTC", "FIRES AT (WITH JITTER)"):
        table.add_column(col)
    for item in items:
        table.add_row(item["local"], item["tick"], item["fire_at"])
    return table
