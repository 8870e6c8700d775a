"""Time-sortable identifiers that are safe as NATS subject tokens."""

from __future__ import annotations

import os
import re
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
# A subject token may not contain '.', '*', '>' or whitespace; we are stricter so ids
# are also safe in URLs, file names and DuckDB literals.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def new_id() -> str:
    """A 26-char ULID-style id: 48 bits of milliseconds then 80 random bits, base32."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_token(value: str) -> bool:
    return bool(TOKEN_RE.match(value))


def is_domain(value: str) -> bool:
    return bool(DOMAIN_RE.match(value))
