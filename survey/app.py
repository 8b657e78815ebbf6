"""The survey web app (Starlette + uvicorn; plain HTML/JS from `survey/static`, no build step).

Rater routes (no system or variant name ever leaves through them):
  GET  /s/{study}                 the study page (consent, instructions, pairs, completion code)
  POST /api/s/{study}/start       {"pid"?} -> {"rater"}   (pid from the crowd platform's URL)
  POST /api/s/{study}/next        {"rater"} -> pair or completion
  POST /api/s/{study}/vote        {"rater","assignment","token","answers","elapsed_ms"} -> {"ok","next"}
  GET  /m/{assignment}.{part}.{sig}  a video (part 0 left, 1 right) or the i2v image (2) of one
                                  assignment; Range honoured; every byte range sent is recorded
Admin routes (token from `ltxlab survey serve --admin-token`, sent as `Authorization: Bearer T`):
  GET  /admin                     status page
  GET  /api/admin/studies         studies with counts
  GET  /api/admin/studies/{name}/status   votes per pair, raters, flagged raters
  GET  /api/admin/studies/{name}/export   every vote as CSV
See docs/survey.md for the request and response bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import html
import json
import re
import time
import unicodedata
from pathlib import Path

import anyio
import anyio.to_thread

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from survey.db import AsyncPostgres, WalCheckpointer, check_writable, random_id
from survey.store import ApiError, Store, WriteLockBusy

MAX_BODY_BYTES = 16 * 1024  # a vote is ~300 bytes; anything near this is not a vote
_HERE = Path(__file__).parent
_PID_RE = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")
_COOKIE = "ltxs_rater"
_COOKIE_RE = re.compile(r"[A-Za-z0-9_-]{16,40}")
_RANGE_RE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")
_CHUNK = 64 * 1024
_LOCK_POLL_S = 0.001  # pause before retrying a call that met another worker's SQLite write lock
_LOCK_POLLS = 5000  # then wait inside SQLite (busy_timeout), as a last resort
_NAME_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")  # admin study names: printable, as stored
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the pid in the page URL must not leak to other sites
}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_HEADERS)


async def _json_body(request: Request) -> dict:
    """The request's JSON object, refusing oversized or malformed bodies before parsing."""
    return await _parse_json_body(request.headers.get("content-length"), request.stream())


async def _asgi_json_body(scope: dict, receive) -> dict:  # noqa: ANN001 - ASGI receive
    """`_json_body` of a bare ASGI request (see SurveyApp); a client gone midway raises ClientDisconnect."""
    length = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"content-length"), None)

    async def chunks():  # noqa: ANN202 - async iterator of bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return

    return await _parse_json_body(length, chunks())


async def _parse_json_body(length: str | None, stream) -> dict:  # noqa: ANN001 - async iterator of bytes
    if length is not None and (not re.fullmatch(r"[0-9]{1,12}", length) or int(length) > MAX_BODY_BYTES):
        raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes.")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Request body is not valid JSON.") from None
    except RecursionError:  # ~2,500+ nested brackets fit in 16 KiB and exhaust the parser's stack
        raise ApiError(400, "Request body is nested too deeply to be a survey request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    return body


def normalise_pid(pid: object) -> str | None:
    """A participant id as the crowd platform meant it: NFKC, surrounding whitespace dropped.

    "P1\n", " P1" and the full-width "Ｐ１" are all P1; None when nothing is left. Raises 400
    for anything that is not then 1-128 letters, digits or _.@:- characters.
    """
    if pid is None:
        return None
    if not isinstance(pid, str):
        raise ApiError(400, "The participant id must be 1-128 letters, digits or _.@:- characters.")
    pid = unicodedata.normalize("NFKC", pid).strip()
    if not pid:
        return None
    if not _PID_RE.match(pid):
        raise ApiError(400, "The participant id must be 1-128 letters, digits or _.@:- characters.")
    return pid


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[first, end) of a single-range `Range` header, None to send the whole file.

    Multiple or malformed ranges are ignored (the whole file is sent, as RFC 9110 allows); a range
    wholly past the end raises 416.
    """
    match = _RANGE_RE.fullmatch(header.strip()) if header else None
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # suffix: the last N bytes
        n = int(match[2])
        return (max(0, size - n), size) if n else None
    first = int(match[1])
    end = size if match[2] == "" else min(size, int(match[2]) + 1)
    if first >= size:
        raise ApiError(416, "The requested byte range starts past the end of this file.")
    return (first, end) if first < end else None


class MediaResponse(Response):
    """A byte range of a media file that reports which bytes went out (`on_sent(first, end, started)`).

    Headers are the same for every file of one size (no Last-Modified, no ETag, no name), so the
    two videos of a pair answer identical headers. The record is committed just before the last
    chunk is sent, so a client holding every byte finds it when it votes; a client that
    disconnects stops the count at the last chunk handed to the transport (uvicorn drops sends
    after a disconnect silently; flow control holds a chunk until the client reads).
    """

    def __init__(self, path: str, mime: str, size: int, span: tuple[int, int] | None, on_sent) -> None:  # noqa: ANN001
        self.path, self.on_sent = path, on_sent
        self.first, self.end = span or (0, size)
        super().__init__(status_code=206 if span else 200, media_type=mime, headers={
            "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
            "Content-Length": str(self.end - self.first),
            **({"Content-Range": f"bytes {self.first}-{self.end - 1}/{size}"} if span else {})})

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        sent, started, recorded = self.first, time.time(), False
        try:
            async with await anyio.open_file(self.path, "rb") as file:
                await file.seek(self.first)
                while sent < self.end and not gone.is_set():
                    chunk = await file.read(min(_CHUNK, self.end - sent))
                    if not chunk:
                        break
                    last = sent + len(chunk) >= self.end
                    if last:  # commit the record before the client can hold every byte and vote
                        await self.on_sent(self.first, self.end, started)
                        recorded = True
                    await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                    sent += len(chunk)
        finally:
            watcher.cancel()
            if not recorded:  # cut short (disconnect, file changed): count what went out
                await self.on_sent(self.first, sent, started)


_HOT_PATH = re.compile(r"/api/s/([^/]+)/(vote|next)")  # the routes' own paths, {study} as Starlette matches it
_SERVER_ERROR = "The server hit an internal error; your earlier votes are safe, please retry."
_RAW_HEADERS = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in _HEADERS.items()]


class SurveyApp(Starlette):
    """The Starlette app, with the two requests of every vote (POST .../vote and .../next) answered first.

    Each rater request went through Starlette's error and exception middleware, its router (ten
    routes tried in turn), a Request and a JSONResponse: ~40 us of a vote's ~1 ms of server CPU.
    These two are answered here from the ASGI scope with the same operations, the same JSON body
    checks and the same replies (status, body and headers, errors included); any other request,
    or these under a root_path, go through the app as before.
    """

    def __init__(self, *, hot: dict, **kwargs) -> None:  # noqa: ANN003 - Starlette's arguments
        super().__init__(**kwargs)
        self.hot = hot  # "vote" | "next" -> async (study public id, async body reader) -> reply dict

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            match = _HOT_PATH.fullmatch(scope["path"])
            if match is not None:
                await self._answer(self.hot[match[2]], match[1], scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    @staticmethod
    async def _answer(operation, public_id: str, scope: dict, receive, send) -> None:  # noqa: ANN001
        try:
            status, reply = 200, await operation(public_id, lambda: _asgi_json_body(scope, receive))
        except ApiError as exc:
            status, reply = exc.status, {"error": exc.message}
        except ClientDisconnect:
            return  # nobody to answer
        except Exception:
            await _send_json(send, 500, {"error": _SERVER_ERROR})
            raise  # logged by the server, as Starlette's error middleware does
        await _send_json(send, status, reply)


async def _send_json(send, status: int, reply: dict) -> None:  # noqa: ANN001 - ASGI send
    """What `JSONResponse(reply, status, headers=_HEADERS)` sends, byte for byte."""
    body = json.dumps(reply, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")
    await send({"type": "http.response.start", "status": status, "headers": [
        *_RAW_HEADERS, (b"content-length", str(len(body)).encode("latin-1")), (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _render(name: str, **values: str) -> str:
    text = (_HERE / "templates" / name).read_text()
    for key, value in values.items():
        text = text.replace("{{ " + key + " }}", value)
    return text


def create_app(engine: Engine, admin_token: str) -> SurveyApp:
    """The ASGI app over one vote store. `admin_token` guards the admin routes.

    Raises survey.db.DatabaseNotWritable (one sentence) when the database cannot take votes.
    """
    check_writable(engine)
    store = Store(engine)
    inline_db = engine.dialect.name == "sqlite"
    store.wait_for_lock = not inline_db

    threads: list[anyio.CapacityLimiter] = []  # made on first use: a limiter belongs to the running loop
    # PostgreSQL: votes and pairs run on the event loop through psycopg (2 round trips a vote, no thread hop)
    pg = None if inline_db else AsyncPostgres(engine.url)

    async def call(fn, *args):  # noqa: ANN001, ANN202
        # SQLite work is short and serialised by its write lock anyway: run it on the event loop
        # (no thread hop per request). Networked databases go to threads, as many as the pool has
        # connections: more threads would only wait for a connection and contend for the GIL.
        if inline_db:
            for _ in range(_LOCK_POLLS):
                try:
                    return fn(*args)
                except WriteLockBusy:  # another worker is writing: serve other requests meanwhile
                    await asyncio.sleep(_LOCK_POLL_S)
            store.wait_for_lock = True
            try:
                return fn(*args)
            finally:
                store.wait_for_lock = False
        if not threads:
            threads.append(anyio.CapacityLimiter(getattr(engine.pool, "size", lambda: 8)()))
        return await anyio.to_thread.run_sync(fn, *args, limiter=threads[0])

    async def operate(sync, steps, *args):  # noqa: ANN001, ANN202 - Store method and its Read/Write generator
        """A store operation: on PostgreSQL through `pg` on this loop, else `sync` through `call`."""
        if pg is None:
            return await call(sync, *args)
        return await pg.run(steps(*args), store.integrity_errors)

    async def study(public_id: str):  # noqa: ANN202 - StudyState
        # A loaded study needs no database work: no thread hop (half of PostgreSQL's per-request hops).
        state = store.cached_study(public_id)
        return state if state is not None else await call(store.study, public_id)

    async def study_page(request: Request) -> Response:
        try:
            state = await study(request.path_params["study"])
        except ApiError as exc:
            return HTMLResponse(_render("error.html", message=html.escape(exc.message)), exc.status, headers=_HEADERS)
        cfg = {"study": state.public_id, "questions": state.config["questions"]}
        page = _render("study.html", title=html.escape(state.config.get("title") or "Video comparison study"),
                       config=json.dumps(cfg).replace("<", "\\u003c"))  # inert inside <script>
        return HTMLResponse(page, headers={**_HEADERS, "Content-Security-Policy": _CSP})

    async def start(request: Request) -> Response:
        state = await study(request.path_params["study"])
        body = await _json_body(request)
        pid = normalise_pid(body.get("pid"))
        if pid is None and state.config.get("max_raters") is not None:
            raise ApiError(400, "This study needs your participant id: open it from the link your study platform gave you.")
        new_cookie = None
        cookie = request.cookies.get(_COOKIE, "")
        if not _COOKIE_RE.fullmatch(cookie):
            cookie = new_cookie = random_id()
        external, source = (f"pid:{pid}", "pid") if pid else (f"cookie:{cookie}", "cookie")
        address = request.client.host if request.client else ""
        result = await operate(store.start, store.start_steps, state, external, source, address, cookie)
        response = JSONResponse(result, headers=_HEADERS)
        if new_cookie:
            response.set_cookie(_COOKIE, new_cookie, max_age=30 * 86400, httponly=True, samesite="lax")
        return response

    async def next_op(public_id: str, read_body) -> dict:  # noqa: ANN001 - async () -> the JSON body
        state = await study(public_id)
        body = await read_body()
        rid = store.rater_id(state, body.get("rater"))
        return await operate(store.next_pair, store.next_steps, state, rid)

    async def vote_op(public_id: str, read_body) -> dict:  # noqa: ANN001 - async () -> the JSON body
        state = await study(public_id)
        body = await read_body()
        rid = store.rater_id(state, body.get("rater"))
        return await operate(store.vote, store.vote_steps, state, rid, body)

    async def next_pair(request: Request) -> Response:  # SurveyApp answers these first; kept for a root_path
        return JSONResponse(await next_op(request.path_params["study"], lambda: _json_body(request)), headers=_HEADERS)

    async def vote(request: Request) -> Response:
        return JSONResponse(await vote_op(request.path_params["study"], lambda: _json_body(request)), headers=_HEADERS)

    async def media(request: Request) -> Response:
        path, mime, aid, part = await call(store.media, request.path_params["media"])
        try:
            size = Path(path).stat().st_size
        except OSError:
            raise ApiError(404, "No such media file.") from None
        span = byte_range(request.headers.get("range"), size)

        async def on_sent(first: int, end: int, at: float) -> None:
            await operate(store.record_delivery, store.delivery_steps, aid, part, first, end, at)

        # No filename: a Content-Disposition header would carry a name; the URL names the assignment only.
        return MediaResponse(path, mime, size, span, on_sent)

    def _check_admin(request: Request) -> None:
        header = request.headers.get("authorization", "")  # exactly "Bearer <token>": a bare token is refused
        given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise ApiError(401, "Admin routes need 'Authorization: Bearer <token>' with the token printed by serve.")

    async def admin_page(request: Request) -> Response:
        return HTMLResponse(_render("admin.html"), headers={**_HEADERS, "Content-Security-Policy": _CSP})

    async def admin_studies(request: Request) -> Response:
        _check_admin(request)
        from survey import reports

        return JSONResponse(await run_in_threadpool(reports.list_studies, engine), headers=_HEADERS)

    def _study_name(request: Request) -> str:
        name = request.path_params["name"]
        if not _NAME_RE.fullmatch(name):  # a NUL byte would make PostgreSQL raise, not answer "no such study"
            raise ApiError(404, "No study of that name; GET /api/admin/studies lists them.")
        return name

    async def admin_status(request: Request) -> Response:
        _check_admin(request)
        from survey import reports

        try:
            status = await run_in_threadpool(reports.study_status, engine, _study_name(request))
        except reports.UnknownStudyError:
            raise ApiError(404, "No study of that name; GET /api/admin/studies lists them.") from None
        return JSONResponse(status, headers=_HEADERS)

    async def admin_export(request: Request) -> Response:
        _check_admin(request)
        from survey import reports

        try:
            frame = await run_in_threadpool(reports.export_votes, engine, _study_name(request))
        except reports.UnknownStudyError:
            raise ApiError(404, "No study of that name; GET /api/admin/studies lists them.") from None
        return Response(frame.to_csv(index=False), media_type="text/csv", headers=_HEADERS)

    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.message)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        messages = {404: "Nothing here; check the link you were given.", 405: "This method is not allowed here."}
        return _error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    async def server_error(request: Request, exc: Exception) -> Response:
        return _error(500, _SERVER_ERROR)

    routes = [
        Route("/s/{study}", study_page),
        Route("/api/s/{study}/start", start, methods=["POST"]),
        Route("/api/s/{study}/next", next_pair, methods=["POST"]),
        Route("/api/s/{study}/vote", vote, methods=["POST"]),
        Route("/m/{media}", media),
        Route("/admin", admin_page),
        Route("/api/admin/studies", admin_studies),
        Route("/api/admin/studies/{name}/status", admin_status),
        Route("/api/admin/studies/{name}/export", admin_export),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202 - async context manager
        checkpointer = WalCheckpointer(engine) if inline_db else None  # SQLite's checkpoints off the event loop
        if checkpointer:
            checkpointer.start()
        gc.freeze()  # the imported modules' objects: full collections then skip them (shorter pauses)
        try:
            yield
        finally:
            if checkpointer:
                checkpointer.stop()

    return SurveyApp(hot={"vote": vote_op, "next": next_op}, routes=routes, lifespan=lifespan, exception_handlers={
        ApiError: api_error, HTTPException: http_error, Exception: server_error})
