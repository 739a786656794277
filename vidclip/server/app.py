"""The `vidclip serve` application: a JSON API over one library, and the web page that uses it.

    GET  /api/status                      the store's counts, model, settings and indexes
    GET  /api/columns                     filterable columns of the store, with their values or ranges
    GET  /api/search?q=...                text search (also: like=VIDEO_ID[&clip=N], video=VIDEO_ID&start=&end=)
    POST /api/search/image                multipart `image` (and optionally `q`): image or image + text search
    GET  /api/thumbnail/{video_id}?t=&w=  one frame as JPEG
    GET  /api/video/{video_id}            the video file, with HTTP Range requests (206) for seeking
    GET  /api/docs, /api/openapi.json     the API's documentation
    GET  /                                the page (static/index.html, app.js, app.css)

Every search option of the Python API is a query parameter (k, per_video, level, where as JSON,
rerank, rerank_k, alpha, hybrid, fusion, rrf_k, text_weight) and is validated by the same code,
so a bad value is the same one-line error, answered as 400 {"error": "..."}.  The model is loaded
and the store's in-memory exact index is filled when the app starts, not on the first request.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from vidclip.errors import InputError, QueryError, StoreBusyError, StoreError, VidclipError
from vidclip.library import Library
from vidclip.server.access import COOKIE, AccessMiddleware, BodyLimit, ServeConfig
from vidclip.server.batcher import TextBatcher
from vidclip.server.media import MAX_UPLOAD_BYTES, NotServed, decode_upload, open_video, thumbnail_jpeg
from vidclip.store.filters import OPERATORS, filterable_columns

log = logging.getLogger("vidclip")

# Columns a user has no reason to filter on in the page (the API accepts every filterable column).
_NOT_IN_PAGE = {"video_id", "status", "error", "decoder_note", "metadata", "rotation", "search_text"}
_TEXT_COLUMNS = {"uri", "title", "description", "tags"}  # free text: filtered with "contains"
MAX_CHOICES = 50  # a string column with at most this many distinct values is offered as a choice


def _status_of(exc: VidclipError) -> int:
    if isinstance(exc, NotServed):
        return exc.status
    if isinstance(exc, (QueryError, InputError)):
        return 400
    if isinstance(exc, (StoreBusyError, StoreError)):
        return 503
    return 500


def where_from_json(raw: str | None) -> dict | None:
    """The `where` query parameter: a JSON object {column: value | [op, value] | [[op, value], ...]}
    -> the Python API's structured filter (vidclip.store.filters)."""
    if raw is None or not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise QueryError(f"where is not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise QueryError('where must be a JSON object, e.g. {"codec": "h264", "duration_s": [">=", 10]}')

    def condition(column, value):
        if isinstance(value, list):
            if len(value) == 2 and isinstance(value[0], str) and value[0] in OPERATORS:
                return (value[0], value[1])
            if value and all(isinstance(c, list) for c in value):
                return [condition(column, c) for c in value]
            raise QueryError(f"filter on {column!r}: a list must be [operator, value] or a list of them "
                             f"(operators: {', '.join(OPERATORS)})")
        return value

    return {str(k): condition(k, v) for k, v in obj.items()}


def create_app(lib: Library, config: ServeConfig, warm: bool = True):
    static = resources.files("vidclip.server") / "static"
    app = FastAPI(title="vidclip", summary="Text-to-video search over one vidclip store: videos and the moments inside them",
                  docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    state = _State(lib)
    if warm:
        state.warm()

    @app.exception_handler(VidclipError)
    async def _vidclip_error(request, exc: VidclipError):
        return JSONResponse({"error": str(exc)}, status_code=_status_of(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)

    # -- store --------------------------------------------------------------------------------------
    @app.get("/api/status", summary="The store's counts, model, sampling, temporal module and indexes")
    def status():
        return {"uri": lib.uri, **lib.status()}

    @app.get("/api/columns", summary="Filterable columns, with their distinct values (few) or range (numbers)")
    def columns():
        return {"columns": state.columns()}

    # -- search -------------------------------------------------------------------------------------
    def search_options(k, per_video, level, where, rerank, rerank_k, alpha, hybrid, fusion, rrf_k, text_weight):
        return dict(k=k, per_video=per_video, level=level, where=where_from_json(where), rerank=rerank or None,
                    rerank_k=rerank_k, alpha=alpha, hybrid=hybrid, fusion=fusion, rrf_k=rrf_k, text_weight=text_weight)

    common = dict(
        k=Query(24, description="hits to return (1-1000)"),
        per_video=Query(1, description="at most this many hits per video (clip level)"),
        level=Query("clip", description="clip | video"),
        where=Query(None, description='JSON filter over the videos table, e.g. {"codec": "h264", "duration_s": [">=", 10]}'),
        rerank=Query(None, description="max | mean | fusion: re-rank candidates by their best frames"),
        rerank_k=Query(100), alpha=Query(0.5),
        hybrid=Query(False, description="fuse with BM25 full-text search over title/description/tags (needs q)"),
        fusion=Query("rrf"), rrf_k=Query(60), text_weight=Query(0.5),
    )

    @app.get("/api/search", summary="Search by text, by a moment of the library (like), or by a span of a library video")
    def search(
        q: str | None = Query(None, description="the text query"),
        like: str | None = Query(None, description="video_id: more like this video (or this clip, with clip=)"),
        clip: int | None = Query(None, description="with like: the clip_id"),
        video: str | None = Query(None, description="video_id of a library video to search with (with start/end: a span)"),
        start: float | None = Query(None), end: float | None = Query(None),
        k: int = common["k"], per_video: int = common["per_video"], level: str = common["level"],
        where: str | None = common["where"], rerank: str | None = common["rerank"], rerank_k: int = common["rerank_k"],
        alpha: float = common["alpha"], hybrid: bool = common["hybrid"], fusion: str = common["fusion"],
        rrf_k: int = common["rrf_k"], text_weight: float = common["text_weight"],
    ):
        t0 = state.begin()
        options = search_options(k, per_video, level, where, rerank, rerank_k, alpha, hybrid, fusion, rrf_k, text_weight)
        text = _text(q)
        given = [name for name, v in (("q", text), ("like", like), ("video", video)) if v is not None]
        if len(given) != 1:
            raise QueryError("give exactly one of q, like, video" if given else "empty query: give q, like or video")
        if text is not None:
            vector = state.text_vector(text)
            t0 = state.lap("embed", t0)
            hits = lib.search(text, vector=vector, **options)
        elif like is not None:
            if hybrid:
                raise QueryError("hybrid search needs a text query")
            hits = lib.search(vector=lib.stored_vector(like, clip), **options)
        else:
            span = None if start is None and end is None else (start or 0.0, end if end is not None else float("inf"))
            with open_video(lib.store, video) as opened:
                hits = lib.search(video=opened.path, span=span, **options)
        return state.answer(hits, t0)

    @app.post("/api/search/image", summary="Search by an uploaded image (and optionally a text, mixed 50/50)")
    async def search_image(
        image: UploadFile = File(..., description=f"a JPEG/PNG/WebP image, at most {MAX_UPLOAD_BYTES // 2**20} MB"),
        q: str | None = Form(None), k: int = Form(24), per_video: int = Form(1), level: str = Form("clip"),
        where: str | None = Form(None), rerank: str | None = Form(None), rerank_k: int = Form(100),
        alpha: float = Form(0.5),
    ):
        from starlette.concurrency import run_in_threadpool

        t0 = time.perf_counter()
        data = await image.read(MAX_UPLOAD_BYTES + 1)
        options = search_options(k, per_video, level, where, rerank, rerank_k, alpha, False, "rrf", 60, 0.5)
        name = os.path.basename(image.filename or "upload")

        def run():
            state.begin()
            pixels = decode_upload(data, name)
            return lib.search(_text(q), image=pixels, **options)

        return await run_in_threadpool(lambda: state.answer(run(), t0))  # the store's queries: off the event loop

    # -- media --------------------------------------------------------------------------------------
    @app.get("/api/thumbnail/{video_id}", summary="The frame nearest t seconds, as JPEG", response_class=Response)
    def thumbnail(video_id: str, t: float = Query(0.0), w: int = Query(320, description="160 | 320 | 640")):
        data = thumbnail_jpeg(lib.store, video_id, t, w)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/video/{video_id}", summary="The video file; Range requests give 206 Partial Content",
             response_class=FileResponse)
    def video_file(video_id: str):
        opened = open_video(lib.store, video_id)
        try:
            return _OpenFileResponse(opened, media_type=_media_type(opened.name),
                                     headers={"Cache-Control": "private, max-age=3600"})
        except BaseException:
            opened.close()
            raise

    # -- the page -----------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request):
        html = (static / "index.html").read_text(encoding="utf-8")
        response = HTMLResponse(html, headers={"Cache-Control": "no-store",
                                               "Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                                               "Referrer-Policy": "no-referrer"})
        token = request.query_params.get("token")
        if config.token is not None and token:  # AccessMiddleware has checked it: keep it as a cookie
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(BodyLimit, max_bytes=MAX_UPLOAD_BYTES + 2**16)
    app.add_middleware(AccessMiddleware, config=config)
    app.state.vidclip = state
    return app


class _OpenFileResponse(FileResponse):
    """Starlette's FileResponse (Range requests, 206/416) over a verified open descriptor, closed
    however the response ends: sent, cut off by the client, or refused (a 416 returns before
    FileResponse runs its background task)."""

    def __init__(self, opened, **kwargs):
        super().__init__(opened.path, **kwargs)
        self._opened = opened

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._opened.close()


_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self'; script-src 'self'; "
        "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

_MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg"}


def _media_type(name: str) -> str:
    return _MEDIA_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


# A request-size guard, not the model's limit: the tokenizer reads the first context_length tokens
# (vidclip/query/embedding.py), which every CLIP reaches well before 1000 characters.
MAX_QUERY_CHARS = 1000


def _text(q: str | None) -> str | None:
    if q is None or not q.strip():
        return None
    if len(q) > MAX_QUERY_CHARS:
        raise QueryError(f"the text query is over {MAX_QUERY_CHARS} characters")
    return q.strip()


class _State:
    """What the app keeps warm: the library (model loaded once), the text batcher, the columns."""

    def __init__(self, lib: Library):
        self.lib = lib
        self.batcher = TextBatcher(lambda texts: lib.encoder.encode_text(texts).numpy())
        self._columns: tuple | None = None  # (videos table version, columns)
        self._local = threading.local()  # this request's timings

    def warm(self) -> None:
        """Load the model, and fill the in-memory exact index with one search."""
        t0 = time.perf_counter()
        self.lib.encoder
        if self.lib.store.has_vectors:
            dim = int(self.lib.store.meta["model"]["dim"])
            probe = np.ones(dim, np.float32) / np.sqrt(dim)
            for level in ("clip", "video"):
                self.lib.search(vector=probe, k=1, level=level)
        log.info("model loaded and store warmed in %.1fs", time.perf_counter() - t0)

    def text_vector(self, text: str) -> np.ndarray:
        return self.batcher.embed(text)

    def begin(self) -> float:
        """A request starts on this thread: no timings yet; returns now."""
        self._local.laps = {}
        return time.perf_counter()

    def lap(self, name: str, t0: float) -> float:
        """Records the time since t0 under `name` for this request's answer; returns now."""
        now = time.perf_counter()
        self._local.laps = {**getattr(self._local, "laps", {}), name: round(1000 * (now - t0), 2)}
        return now

    def answer(self, hits, t0: float) -> dict:
        """The JSON answer: each hit with its page fields; timing_ms splits the request (embed:
        the text tower, with any wait for a shared batch; search: the store; answer: this)."""
        t0 = self.lap("search", t0)
        rows = self.lib.store.videos_by_id({h.video_id for h in hits}) if len(hits) else {}
        out = []
        for h in hits:
            d = h.to_dict()
            video = rows.get(h.video_id, {})
            t = h.best_t if h.best_t is not None else (h.start_s + h.end_s) / 2
            d.update(name=os.path.basename(str(h.uri)), title=video.get("title"), duration_s=video.get("duration_s"),
                     thumbnail=f"/api/thumbnail/{h.video_id}?t={t:.3f}&w=320", video=f"/api/video/{h.video_id}")
            out.append(d)
        self.lap("answer", t0)
        laps, self._local.laps = self._local.laps, {}
        return {"hits": out, "took_ms": round(sum(laps.values()), 1), "timing_ms": laps}

    def columns(self) -> list[dict]:
        store = self.lib.store
        if not store.has_table("videos"):
            return []
        version = store.table("videos").version
        if self._columns is not None and self._columns[0] == version:
            return self._columns[1]
        import pyarrow as pa
        import pyarrow.compute as pc

        names = [n for n, t in filterable_columns(store.table("videos").schema).items() if n not in _NOT_IN_PAGE]
        table = store.table("videos").search().where("status = 'ok'").select(names).limit(None).to_arrow()
        out = []
        for name in names:
            col, dtype = table.column(name), table.schema.field(name).type
            entry: dict = {"name": name}
            if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
                bounds = pc.min_max(col).as_py() if len(col) else {"min": None, "max": None}
                entry.update(kind="number", min=bounds["min"], max=bounds["max"])
            elif pa.types.is_timestamp(dtype):
                entry.update(kind="time")
            elif name in _TEXT_COLUMNS:
                entry.update(kind="text")
            else:
                values = pc.unique(col.drop_null()) if len(col) else pa.array([], pa.string())
                if len(values) > MAX_CHOICES:
                    entry.update(kind="text")
                else:
                    entry.update(kind="choice", values=sorted(str(v) for v in values.to_pylist()))
            out.append(entry)
        self._columns = (version, out)
        return out
