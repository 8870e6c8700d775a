"""First load of the web UI (issue 12: under 1 s on loopback): a real `jobstream up`, Debian's
chromium through Playwright, a fresh browser context per load (an empty cache, as a first
visit), the token already in the tab's session storage (as after signing in), and the time
from navigation to the Jobs page showing its rows, then to the load event; p50 and max over
`--loads` loads, with `--jobs` jobs in the domain.

Run: `python -m bench.ui_load` (`--loads 20 --jobs 200`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from services.runtime.ports import free_port
from tests.e2e.up import Up
from tests.ui.browser import chromium


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the domain before the loads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        up = Up(Path(tmp) / "data", "--port", str(free_port()), "--nats-port", str(free_port())).wait_banner()
        try:
            with up.client() as api:
                batch = [
                    {"name": f"load-{i}", "executor": {"type": "shell", "script": "true"}}
                    for i in range(args.jobs)
                ]
                for i in range(0, len(batch), 1000):
                    assert api.post("/jobs/batch", json={"jobs": batch[i : i + 1000]}).status_code == 201
            shown: list[float] = []
            loaded: list[float] = []
            with chromium() as browser:
                for _ in range(max(1, args.loads)):
                    context = browser.new_context()  # an empty cache each time: a first visit
                    context.add_init_script(
                        f"sessionStorage.setItem('jobstream.token', {json.dumps(up.token)})"
                    )
                    page = context.new_page()
                    began = time.perf_counter()
                    page.goto(f"{up.api_url}/jobs", wait_until="commit")
                    page.get_by_role("cell", name="load-", exact=False).first.wait_for(timeout=30_000)
                    shown.append(time.perf_counter() - began)
                    timing = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
                    loaded.append(float(timing) / 1000)
                    context.close()
        finally:
            up.stop()
    out = {
        "loads": len(shown),
        "jobs": args.jobs,
        "jobs_shown_p50_s": round(statistics.median(shown), 3),
        "jobs_shown_max_s": round(max(shown), 3),
        "load_event_p50_s": round(statistics.median(loaded), 3),
        "load_event_max_s": round(max(loaded), 3),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
