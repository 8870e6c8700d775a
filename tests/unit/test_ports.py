"""Choosing ports for `up`: explicit, then last time's, then the default, then any, said out loud."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from services.runtime.ports import PortTaken, choose, free_port

HOST = "127.0.0.1"


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_explicit_port_taken_is_an_error(taken: int) -> None:
    with pytest.raises(PortTaken, match=f"NATS port {taken}"):
        choose(HOST, "NATS", taken, None, 4222)


def test_last_times_port_wins_over_the_default() -> None:
    kept = free_port()
    assert choose(HOST, "NATS", None, kept, free_port()) == (kept, None)


def test_a_taken_port_is_replaced_and_said(taken: int) -> None:
    port, note = choose(HOST, "NATS", None, taken, 4222)
    assert port != taken and note is not None and f"{taken} (used last time) is taken" in note
    port, note = choose(HOST, "API", None, None, taken)
    assert port != taken and note is not None and f"API port {taken} is taken" in note and str(port) in note


def test_a_free_default_is_used_quietly() -> None:
    default = free_port()
    assert choose(HOST, "API", None, None, default) == (default, None)
