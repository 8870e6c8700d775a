"""The UI's bundle size budget: what a first visit downloads, gzip-compressed as a server
would send it. Raise the budget on purpose, in review, never to make a build pass."""

from __future__ import annotations

import gzip

from services.api.ui_files import UI_DIST

BUDGET_GZIP_KB = 450  # measured 392 KB (React, Ant Design, react-query, virtuoso, anser, dayjs)


def test_the_first_load_fits_the_budget() -> None:
    index = UI_DIST / "index.html"
    assert index.is_file(), "the UI is not built: ./dev test builds it (npm run build)"
    assets = [p for p in (UI_DIST / "assets").iterdir() if p.suffix in (".js", ".css")]
    assert assets, "the build made no assets"
    sizes = {p.name: len(gzip.compress(p.read_bytes(), 9)) for p in [index, *assets]}
    total_kb = sum(sizes.values()) / 1024
    assert total_kb <= BUDGET_GZIP_KB, f"{total_kb:.0f} KB gzip > {BUDGET_GZIP_KB} KB: {sizes}"
