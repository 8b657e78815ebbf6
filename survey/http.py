"""uvicorn's httptools protocol with the writes of one event-loop turn sent as one.

uvicorn writes a response's head when the app sends `http.response.start` and its body on
`http.response.body`: two send() calls per reply, each a whole trip through the TCP stack, which
on loopback also runs the receiver's side in the sender's context. A vote's reply is about 1 KB,
and under `benchmarks/survey_load.py` those two writes were 18% of a PostgreSQL worker's samples
(py-spy, `--profile`). Here the writes made in one turn of the event loop are joined and sent once
at its end (`loop.call_soon`); a close sends what is pending first. A streamed body (media) awaits
between its chunks, so each chunk still goes out in its own turn and nothing is held back longer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport whose `write`s in one loop turn become one `write` of the real transport."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the real transport's
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's `http="httptools"` protocol, writing through a `_CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
