"""Read-model queries about job templates."""

from __future__ import annotations

from typing import Any

import msgspec

from events.template import TemplateState
from projections.mapping import full
from projections.queries import Cursor


def get_state(cur: Cursor, domain: str, name: str) -> TemplateState | None:
    row = cur.execute("SELECT state FROM templates WHERE domain = ? AND name = ?", [domain, name]).fetchone()
    return msgspec.json.decode(row[0], type=TemplateState) if row else None


def view(state: TemplateState) -> dict[str, Any]:
    latest = state.latest
    return {
        "name": state.name,
        "status": "deleted" if state.deleted else "active",
        "latest_version": latest.version,
        "description": latest.description,
        "updated_at": state.updated_at.isoformat(),
        "job": full(latest.spec),
        "versions": [
            {
                "version": v.version,
                "saved_at": v.saved_at.isoformat(),
                "saved_by": v.saved_by,
                "description": v.description,
            }
            for v in state.versions
        ],
    }


def list_templates(cur: Cursor, domain: str) -> list[dict[str, Any]]:
    rows = cur.execute(
        "SELECT state FROM templates WHERE domain = ? AND status = 'active' ORDER BY name", [domain]
    ).fetchall()
    return [view(msgspec.json.decode(r[0], type=TemplateState)) for r in rows]
