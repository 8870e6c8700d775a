"""`GET /admin/read-model/snapshot`: the live read model as a DuckDB file, for `replay --verify`.

The API's process holds the file, so no other process can open it; this copies it from within
(projections/snapshot.py) and sends the copy, which is removed once sent.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from projections import snapshot
from services.api.auth import Caller, admin
from services.api.deps import projector

router = APIRouter(prefix="/admin/read-model", tags=["admin"])


@router.get(
    "/snapshot",
    summary="A consistent copy of the live read model's log tables (DuckDB file); admin only",
    response_class=FileResponse,
)
async def get_snapshot(request: Request, who: Caller = Depends(admin)) -> FileResponse:
    proj = projector(request)
    if proj.building is not None:
        raise HTTPException(
            503, detail="the read model is being rebuilt for a new schema version: nothing to verify yet "
            "(see /ready)", headers={"Retry-After": "10"},
        )  # fmt: skip
    # Beside the live file: the same disk, and the size of the model is not a surprise there.
    tmp = Path(tempfile.mkdtemp(prefix="snapshot-", dir=Path(proj.db_path).parent))
    path = tmp / "read-model.duckdb"

    def copy() -> int:
        cur = proj.cursor()
        try:
            return snapshot.take(cur, path)
        finally:
            cur.close()

    try:
        seq = await asyncio.to_thread(copy)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(
        path, media_type="application/vnd.duckdb", filename=f"read-model-{seq}.duckdb",
        headers={"X-Checkpoint-Seq": str(seq)},
        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
    )  # fmt: skip
