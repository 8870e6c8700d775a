"""Time-sortable identifiers that are safe as NATS subject tokens."""

from __future__ import annotations

import base64
import os
import re
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD.encode())
# A subject token may not contain '.', '*', '>' or whitespace; we are stricter so ids
# are also safe in URLs, file names and DuckDB literals.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def new_id() -> str:
    """A 26-char ULID-style id: 48 bits of milliseconds then 80 random bits, base32."""
    # 130 bits in 26 base32 digits: two zero bits on top, then the 128-bit value.
    raw = (int(time.time() * 1000) << 80 | int.from_bytes(os.urandom(10), "big")).to_bytes(16, "big")
    digits = base64.b32encode(b"\x00" * 4 + raw)[6:].translate(_FROM_RFC4648)
    return digits.decode()


def is_token(value: str) -> bool:
    return bool(TOKEN_RE.match(value))


def is_domain(value: str) -> bool:
    return bool(DOMAIN_RE.match(value))
