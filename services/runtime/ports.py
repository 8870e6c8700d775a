"""Port helpers: is a port free, and get one that is."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def accepting(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PortTaken(Exception):
    pass


def choose(
    host: str, what: str, wanted: int | None, kept: int | None, default: int
) -> tuple[int, str | None]:
    """The port to listen on, and a note for the user when it is not the one they would expect.

    An explicit port that is taken is an error. Otherwise the port used last time (kept in the
    data dir) wins, so URLs and joined workers survive a restart; then the default; then any
    free port, said out loud, since a taken default usually means another server is there.
    """
    if wanted is not None:
        if not port_is_free(host, wanted):
            raise PortTaken(f"{what} port {wanted} on {host} is already in use")
        return wanted, None
    if kept is not None:
        if port_is_free(host, kept):
            return kept, None
        port = free_port(host)
        return port, f"{what} port {kept} (used last time) is taken now; {what} listens on {port} instead"
    if port_is_free(host, default):
        return default, None
    port = free_port(host)
    return port, f"{what} port {default} is taken (another server?); {what} listens on {port} instead"
