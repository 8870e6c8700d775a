"""Every shell block of the README, run as a user would paste it, against a live `jobstream up`.

A block runs unless the line before it says `<!-- readme-test: skip: <why> -->`; the reasons
are few and checked here. Blocks share one shell session (variables carry over, as in a
terminal), run with `set -euo pipefail` in a scratch directory, with `.venv/bin` on PATH as
`./dev` leaves it. Only what a person would have to type differently is substituted: the
API URL and NATS URL the banner printed, since their ports differ here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.up import Up

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->")
BLOCK_TIMEOUT_S = 120
# The user's variables (JOB_ID=…, exports) for the next block; bash's own are left out.
SAVE_VARS = (
    "for __v in $(compgen -v); do case $__v in [A-Z]*) ;; *) continue ;; esac; "
    "case $__v in BASH*|SHELLOPTS|PPID|UID|EUID|PIPESTATUS|FUNCNAME|GROUPS|HOSTNAME|HOSTTYPE|IFS|PS[0-9]"
    "|OPTIND|OPTERR|LINENO|RANDOM|SECONDS|SRANDOM|EPOCH*|COLUMNS|LINES|HISTCMD|MACHTYPE|OSTYPE|SHLVL"
    '|PWD|OLDPWD|DIRSTACK) continue ;; esac; declare -p "$__v"; done'
)


def shell_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, body, skip reason) of each ```sh block."""
    blocks: list[tuple[int, str, str | None]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i
            i += 1
            body: list[str] = []
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = next((ln for ln in reversed(lines[max(0, start - 3) : start]) if ln.strip()), "")
            skip = SKIP.search(before)
            blocks.append((start + 1, "\n".join(body), skip.group(1) if skip else None))
        i += 1
    return blocks


def test_readme_blocks_are_found_and_skips_are_few() -> None:
    blocks = shell_blocks(README.read_text())
    assert len(blocks) >= 8
    skipped = [b for b in blocks if b[2] is not None]
    assert len(skipped) <= 7, [(n, why) for n, _, why in skipped]


def test_every_readme_command_works_when_copied(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    venv_bin = Path(sys.executable).parent
    up = Up(work / ".jobstream").wait_banner()
    try:
        state = tmp_path / "state.sh"
        state.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSTREAM_", "NATS_", "ADMIN_"))}
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["HOME"] = str(tmp_path)
        ran = 0
        for line, body, skip in shell_blocks(README.read_text()):
            if skip is not None:
                continue
            script = body.replace("http://127.0.0.1:8000", up.api_url)
            script = script.replace(
                "nats://127.0.0.1:4222", "nats://" + up.nats_url.rsplit("@", 1)[-1].removeprefix("nats://")
            )
            wrapped = (
                f"set -euo pipefail\nsource {shlex.quote(str(state))}\ncd {shlex.quote(str(work))}\n"
                f"{script}\n{SAVE_VARS} > {shlex.quote(str(state))}.new\n"
                f"mv {shlex.quote(str(state))}.new {shlex.quote(str(state))}\n"
            )
            done = subprocess.run(
                ["bash", "-c", wrapped], env=env, cwd=work, capture_output=True, text=True,
                timeout=BLOCK_TIMEOUT_S,
            )  # fmt: skip
            assert done.returncode == 0, (
                f"README.md block at line {line} failed with exit {done.returncode}:\n{body}\n"
                f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
            )
            ran += 1
        assert ran >= 4
    finally:
        up.stop()
