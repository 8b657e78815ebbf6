"""A free TCP port for a server a test starts, taken outside the kernel's ephemeral range.

A port found by binding to port 0 comes from the ephemeral range (32768-60999 on Linux) and is
released before the server binds it, so another process on the machine (a parallel test worker's
embedded Ray, say) can be handed the same port by its own bind(0) in between. gRPC servers set
SO_REUSEPORT, so both then bind and the kernel splits connections between them: a Ray job driver
reached the other cluster's GCS that way and was refused ("InvalidAuthToken"). Ports from
20000-32767 are outside that range and outside Ray's worker ports (10002-19999), so nothing
on the machine is handed one without asking for it by number."""

from __future__ import annotations

import random
import socket

_LOW, _HIGH = 20000, 32767


def free_port() -> int:
    """A port in 20000-32767 that nothing listens on now (checked without SO_REUSEADDR/PORT)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(_LOW, _HIGH)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_LOW}-{_HIGH} after 200 tries")
