"""The survey web app (Starlette + uvicorn; plain HTML/JS from `survey/static`, no build step).

Rater routes (no system or variant name ever leaves through them):
  GET  /s/{study}                 the study page (consent, instructions, pairs, completion code)
  POST /api/s/{study}/start       {"pid"?} -> {"rater"}   (pid from the crowd platform's URL)
  POST /api/s/{study}/next        {"rater"} -> pair or completion
  POST /api/s/{study}/vote        {"rater","assignment","token","answers","elapsed_ms"} -> {"ok","next"}
  GET  /m/{media}                 a video or image, by opaque id
Admin routes (token from `ltxlab survey serve --admin-token`, sent as `Authorization: Bearer T`):
  GET  /admin                     status page
  GET  /api/admin/studies         studies with counts
  GET  /api/admin/studies/{name}/status   votes per pair, raters, flagged raters
  GET  /api/admin/studies/{name}/export   every vote as CSV
See docs/survey.md for the request and response bodies.
"""

from __future__ import annotations

import hmac
import html
import json
import re
from pathlib import Path

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from survey.db import random_id
from survey.store import ApiError, Store

MAX_BODY_BYTES = 16 * 1024  # a vote is ~300 bytes; anything near this is not a vote
_HERE = Path(__file__).parent
_PID_RE = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")
_COOKIE = "ltxs_rater"
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
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    return body


def _render(name: str, **values: str) -> str:
    text = (_HERE / "templates" / name).read_text()
    for key, value in values.items():
        text = text.replace("{{ " + key + " }}", value)
    return text


def create_app(engine: Engine, admin_token: str) -> Starlette:
    """The ASGI app over one vote store. `admin_token` guards the admin routes."""
    store = Store(engine)
    inline_db = engine.dialect.name == "sqlite"

    async def call(fn, *args):  # noqa: ANN001, ANN202
        # SQLite work is short and serialised by its write lock anyway: run it on the event loop
        # (no thread hop per request). Networked databases go to the thread pool.
        return fn(*args) if inline_db else await run_in_threadpool(fn, *args)

    async def study_page(request: Request) -> Response:
        try:
            state = await call(store.study, request.path_params["study"])
        except ApiError as exc:
            return HTMLResponse(_render("error.html", message=html.escape(exc.message)), exc.status, headers=_HEADERS)
        cfg = {"study": state.public_id, "questions": state.config["questions"]}
        page = _render("study.html", title=html.escape(state.config.get("title") or "Video comparison study"),
                       config=json.dumps(cfg).replace("<", "\\u003c"))  # inert inside <script>
        return HTMLResponse(page, headers={**_HEADERS, "Content-Security-Policy": _CSP})

    async def start(request: Request) -> Response:
        state = await call(store.study, request.path_params["study"])
        body = await _json_body(request)
        pid = body.get("pid")
        new_cookie = None
        if pid not in (None, ""):
            if not isinstance(pid, str) or not _PID_RE.match(pid):
                raise ApiError(400, "The participant id must be 1-128 letters, digits or _.@:- characters.")
            external, source = f"pid:{pid}", "pid"
        else:
            cookie = request.cookies.get(_COOKIE, "")
            if not re.fullmatch(r"[A-Za-z0-9_-]{16,40}", cookie):
                cookie = new_cookie = random_id()
            external, source = f"cookie:{cookie}", "cookie"
        result = await call(store.start, state, external, source)
        response = JSONResponse(result, headers=_HEADERS)
        if new_cookie:
            response.set_cookie(_COOKIE, new_cookie, max_age=30 * 86400, httponly=True, samesite="lax")
        return response

    async def next_pair(request: Request) -> Response:
        state = await call(store.study, request.path_params["study"])
        body = await _json_body(request)
        rid = store.rater_id(state, body.get("rater"))
        return JSONResponse(await call(store.next_pair, state, rid), headers=_HEADERS)

    async def vote(request: Request) -> Response:
        state = await call(store.study, request.path_params["study"])
        body = await _json_body(request)
        rid = store.rater_id(state, body.get("rater"))
        return JSONResponse(await call(store.vote, state, rid, body), headers=_HEADERS)

    async def media(request: Request) -> Response:
        path, mime = await call(store.media, request.path_params["media"])
        if not Path(path).is_file():
            raise ApiError(404, "No such media file.")
        # No filename: a Content-Disposition header would carry a name; the id is all there is.
        return FileResponse(path, media_type=mime, headers={"Cache-Control": "private, max-age=3600",
                                                            "X-Content-Type-Options": "nosniff"})

    def _check_admin(request: Request) -> None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise ApiError(401, "Admin routes need 'Authorization: Bearer <token>' with the token printed by serve.")

    async def admin_page(request: Request) -> Response:
        return HTMLResponse(_render("admin.html"), headers={**_HEADERS, "Content-Security-Policy": _CSP})

    async def admin_studies(request: Request) -> Response:
        _check_admin(request)
        from survey import reports

        return JSONResponse(await run_in_threadpool(reports.list_studies, engine), headers=_HEADERS)

    async def admin_status(request: Request) -> Response:
        _check_admin(request)
        from survey import reports

        try:
            status = await run_in_threadpool(reports.study_status, engine, request.path_params["name"])
        except reports.UnknownStudyError:
            raise ApiError(404, "No study of that name; GET /api/admin/studies lists them.") from None
        return JSONResponse(status, headers=_HEADERS)

    async def admin_export(request: Request) -> Response:
        _check_admin(request)
        from survey import reports

        try:
            frame = await run_in_threadpool(reports.export_votes, engine, request.path_params["name"])
        except reports.UnknownStudyError:
            raise ApiError(404, "No study of that name; GET /api/admin/studies lists them.") from None
        return Response(frame.to_csv(index=False), media_type="text/csv", headers=_HEADERS)

    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.message)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        messages = {404: "Nothing here; check the link you were given.", 405: "This method is not allowed here."}
        return _error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    async def server_error(request: Request, exc: Exception) -> Response:
        return _error(500, "The server hit an internal error; your earlier votes are safe, please retry.")

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
    return Starlette(routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error,
                                                        Exception: server_error})
