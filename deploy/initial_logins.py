"""Write the logins file a nats-server node starts with, before broker-auth runs.

nats-server will not start without the file it includes, and broker-auth needs a running
server to log in to, so something has to write the first version: the service login
(user `jobstream`, the bcrypt hash of NATS_SERVICE_PASSWORD) and no domain token yet.
broker-auth then adds the tokens' logins within a second or two of connecting.

A file that already lets NATS_SERVICE_PASSWORD in is kept as it is (with the tokens'
logins broker-auth last wrote); one that does not (a new password) is started over.

Usage: NATS_SERVICE_PASSWORD=... python deploy/initial_logins.py FILE [FILE...]
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import bcrypt

from services.runtime import broker_auth


def service_hash(text: str) -> str | None:
    """The service login's hash in a rendered logins file, or None."""
    try:
        accounts = json.loads(text.removeprefix("accounts "))
        users = accounts[broker_auth.SERVICE_ACCOUNT]["users"]
    except (ValueError, KeyError, TypeError):
        return None
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict) and user.get("user") == broker_auth.SERVICE_USER:
            password = user.get("password")
            return password if isinstance(password, str) else None
    return None


def lets_in(text: str, password: str) -> bool:
    found = service_hash(text)
    if found is None or not broker_auth.is_bcrypt(found):
        return False
    if broker_auth.is_bcrypt(password):
        return found == password
    return bcrypt.checkpw(password.encode(), found.encode())


def ensure(path: Path, password: str) -> bool:
    """Write the service-only logins unless the file already lets `password` in; True if written."""
    try:
        if lets_in(path.read_text(), password):
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    hashes = {broker_auth.SERVICE_USER: broker_auth.password_hash(password)}
    broker_auth.write(path, broker_auth.render(hashes, {}, datetime.now(UTC)))
    return True


def main(argv: list[str]) -> int:
    password = os.environ.get("NATS_SERVICE_PASSWORD", "")
    if not password:
        print("error: set NATS_SERVICE_PASSWORD", file=sys.stderr)
        return 2
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    for name in argv:
        written = ensure(Path(name), password)
        print(f"{name}: {'written (service login only)' if written else 'kept (it lets the service in)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
