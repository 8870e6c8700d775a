"""Unknown query parameters are refused, like unknown body fields: a misspelt filter
(`?staus=failed`) must not silently return everything."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.dependencies.models import Dependant

_allowed: dict[int, frozenset[str]] = {}


def _names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _names(sub)
    return names


async def no_unknown_query(request: Request) -> None:
    if not request.query_params:
        return
    route: Any = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = _allowed.get(id(route))
    if allowed is None:
        allowed = _allowed[id(route)] = frozenset(_names(dependant))
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise HTTPException(422, detail=f"unknown query parameter {unknown[0]!r}; this route takes: {takes}")
