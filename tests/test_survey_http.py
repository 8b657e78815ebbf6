"""survey/http.py: a reply's head and body leave in one write; streamed chunks and closes still go out."""

from __future__ import annotations

import asyncio

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from survey.http import CoalescingHttpToolsProtocol


class FakeTransport(asyncio.Transport):
    """Records each write the protocol makes to the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):  # noqa: ANN001, ANN201
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope, receive, send) -> None:  # noqa: ANN001
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        for chunk in (b"abc", b"def"):
            await asyncio.sleep(0)  # a streamed body awaits between chunks (file reads do)
            await send({"type": "http.response.body", "body": chunk, "more_body": chunk == b"abc"})
        return
    body = b'{"ok": true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _serve(protocol_class: type, requests: bytes, close: bool = False) -> FakeTransport:
    async def run() -> FakeTransport:
        config = Config(app=_app, http=protocol_class, lifespan="off", log_level="warning")
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(requests)
        for _ in range(50):
            await asyncio.sleep(0)
        if close:
            protocol.transport.close()
        return transport

    return asyncio.run(run())


GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_reply_is_one_write_where_uvicorn_makes_two():
    plain = _serve(HttpToolsProtocol, GET % b"vote")
    assert len(plain.writes) == 2  # what uvicorn does: head, then body
    joined = _serve(CoalescingHttpToolsProtocol, GET % b"vote")
    assert joined.writes == [b"".join(plain.writes)]  # the same bytes, in one send
    assert joined.writes[0].startswith(b"HTTP/1.1 200 OK") and joined.writes[0].endswith(b'{"ok": true}')


def test_streamed_chunks_and_keep_alive_replies_all_arrive_in_order():
    out = _serve(CoalescingHttpToolsProtocol, GET % b"stream" + GET % b"vote")
    data = b"".join(out.writes)
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.index(b"abcdef") < data.rindex(b'{"ok": true}')
    assert len(out.writes) >= 2  # a chunk that awaits goes out in its own turn, not held to the end


def test_close_sends_what_is_pending_first():
    async def run() -> FakeTransport:
        transport = FakeTransport()
        from survey.http import _CoalescingTransport

        wrapped = _CoalescingTransport(transport, asyncio.get_running_loop())
        wrapped.write(b"head")
        wrapped.write(b"body")
        wrapped.close()
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(run())
    assert transport.writes == [b"headbody"] and transport.closed
