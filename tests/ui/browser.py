"""Debian's chromium driven by Playwright (no browser download): the executable path is set,
and the flags keep it off this machine's closed network."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

AXE = Path(__file__).resolve().parents[2] / "ui" / "node_modules" / "axe-core" / "axe.min.js"

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",  # tests run as root
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


@dataclass
class Console:
    """What the page said at error level, and the exceptions it threw: a test ends with none."""

    errors: list[str] = field(default_factory=list)

    def forgive(self, text: str) -> None:
        """Drop one message a test caused on purpose (the browser logs every 4xx a fetch gets,
        so a refusal the test asked for, shown at its field, is logged too)."""
        for i, message in enumerate(self.errors):
            if text in message:
                del self.errors[i]
                return
        raise AssertionError(f"expected a console message with {text!r}, got {self.errors}")

    def watch(self, page: Page) -> Page:
        def on_console(msg: ConsoleMessage) -> None:
            if msg.type in ("error", "warning") and "Download the React DevTools" not in msg.text:
                self.errors.append(f"{msg.type}: {msg.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"exception: {exc}"))
        return page


@contextmanager
def chromium() -> Iterator[Browser]:
    path = chromium_path()
    assert path, f"no chromium at {CHROMIUM}: ./dev installs Debian's chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (rule, impact, where)."""
    assert AXE.is_file(), f"{AXE} is missing: ./dev installs the UI's packages (npm ci)"
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + json.dumps(
            [(n["target"], n["html"][:120], n.get("failureSummary", "")[:200]) for n in v["nodes"][:3]]
        )
        for v in found
        if v["impact"] in ("serious", "critical")
    ]
