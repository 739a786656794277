"""`vidclip serve`: the JSON API against a real server on a free loopback port over a real store.

Every search kind (text, image upload, more-like-this, a span of a library video), validation as
one-line 400s, thumbnails, the video file with Range requests, and the security rules: files only
by video_id and only while they are the file that was ingested (path traversal, a symlink or FIFO
swapped in), upload caps and pixel budgets, Host checks, no CORS, and the token."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

import httpx
import numpy as np
import pytest

import vidclip
from conftest import TINY
from webserver import REPO, TITLES, server, start, stop  # noqa: F401 - server is a fixture

pytestmark = pytest.mark.slow


def _get(srv, path, **kw):
    return httpx.get(srv.url + path, timeout=120, **kw)


def _search(srv, **params):
    return _get(srv, "/api/search?" + urllib.parse.urlencode(params))


def _ids(hits):
    return [(h["video_id"], h["clip_id"]) for h in hits]


def _jpeg(srv) -> bytes:
    hit = _search(srv, q="harbour", k=1).json()["hits"][0]
    return _get(srv, hit["thumbnail"]).content


def test_status_and_columns_describe_the_store(server):
    status = _get(server, "/api/status").json()
    assert status["videos"] == {"ok": 4, "failed": 0} and status["model"]["name"] == "vidclip-tiny"
    columns = {c["name"]: c for c in _get(server, "/api/columns").json()["columns"]}
    assert columns["codec"]["kind"] == "choice" and set(columns["codec"]["values"]) == {"h264", "vp9"}
    assert columns["duration_s"]["kind"] == "number" and (columns["duration_s"]["min"], columns["duration_s"]["max"]) == (4.0, 6.0)
    assert columns["title"]["kind"] == "text" and "video_id" not in columns
    spec = _get(server, "/api/openapi.json").json()
    assert {"/api/search", "/api/search/image", "/api/video/{video_id}", "/api/thumbnail/{video_id}"} <= set(spec["paths"])


def test_text_search_gives_the_python_apis_hits(server):
    lib = vidclip.open(server.db, model=TINY)
    for params in (dict(q="a red ball", k=6, per_video=2), dict(q="forest trail", k=3, hybrid="true"),
                   dict(q="a red ball", k=4, level="video"),
                   dict(q="a red ball", k=4, where=json.dumps({"codec": "h264", "duration_s": [">=", 5]}))):
        got = _search(server, **params)
        assert got.status_code == 200, got.text
        hits = got.json()["hits"]
        where = json.loads(params["where"]) if "where" in params else None
        if where:
            where = {"codec": "h264", "duration_s": (">=", 5)}
        want = lib.search(params["q"], k=params["k"], per_video=params.get("per_video", 1),
                          level=params.get("level", "clip"), hybrid=params.get("hybrid") == "true", where=where)
        assert _ids(hits) == [(h.video_id, h.clip_id) for h in want]
        assert [round(h["start_s"], 3) for h in hits] == [round(h.start_s, 3) for h in want]
        assert all(h["thumbnail"].startswith(f"/api/thumbnail/{h['video_id']}?t=") for h in hits)
    titled = _search(server, q="forest trail", k=1, hybrid="true").json()["hits"][0]
    assert titled["title"] == "forest trail"  # BM25 on the title brings it up


def test_more_like_this_and_a_span_of_a_library_video(server):
    first = _search(server, q="neon traffic", k=3).json()["hits"][0]
    like = _search(server, like=first["video_id"], clip=first["clip_id"], k=3).json()["hits"]
    assert (like[0]["video_id"], like[0]["clip_id"]) == (first["video_id"], first["clip_id"])
    assert like[0]["score"] == pytest.approx(1.0, abs=1e-4)  # the moment itself, then its neighbours
    whole = _search(server, like=first["video_id"], level="video", k=2).json()["hits"]
    assert whole[0]["video_id"] == first["video_id"]
    span = _search(server, video=first["video_id"], start=first["clip_start_s"], end=first["clip_end_s"], k=3)
    assert span.status_code == 200, span.text
    assert span.json()["hits"][0]["video_id"] == first["video_id"]
    missing = _search(server, like="0" * 32, clip=0)
    assert missing.status_code == 400 and "no clip 0 of video" in missing.json()["error"]


def test_image_upload_searches_and_is_refused_in_one_line_when_bad(server):
    jpeg = _jpeg(server)
    ok = httpx.post(server.url + "/api/search/image", files={"image": ("frame.jpg", jpeg, "image/jpeg")},
                    data={"k": "3"}, timeout=120)
    assert ok.status_code == 200 and len(ok.json()["hits"]) == 3, ok.text
    both = httpx.post(server.url + "/api/search/image", files={"image": ("frame.jpg", jpeg, "image/jpeg")},
                      data={"k": "2", "q": "harbour"}, timeout=120)
    assert both.status_code == 200 and len(both.json()["hits"]) == 2

    junk = httpx.post(server.url + "/api/search/image", files={"image": ("junk.jpg", os.urandom(512), "image/jpeg")}, timeout=60)
    assert junk.status_code == 400 and junk.json() == {"error": "junk.jpg: not a readable image (JPEG, PNG, WebP, GIF, BMP or TIFF)"}

    from PIL import Image

    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")  # 100 MP declared, a few KB on the wire
    refused = httpx.post(server.url + "/api/search/image", files={"image": ("bomb.png", bomb.getvalue(), "image/png")}, timeout=60)
    assert refused.status_code == 400 and "10000x10000 is over the 40,000,000-pixel budget" in refused.json()["error"]

    huge = httpx.post(server.url + "/api/search/image", files={"image": ("big.jpg", b"\xff" * (17 * 2**20), "image/jpeg")}, timeout=60)
    assert huge.status_code == 413 and "over 16 MB" in huge.json()["error"]


@pytest.mark.parametrize("params,message", [
    (dict(q="x", k=0), "k must be an integer between 1 and 1000, got 0"),
    (dict(q="x", k="many"), "k: Input should be a valid integer"),
    (dict(q="x", level="scene"), "level"),
    (dict(q="x", rerank="best"), "rerank"),
    (dict(q="x", where="{not json"), "where is not valid JSON"),
    (dict(q="x", where=json.dumps({"nope": 1})), "unknown filter column 'nope'"),
    (dict(q="x", where=json.dumps({"codec": ["~", 1]})), "a list must be [operator, value]"),
    (dict(q="x", like="abc"), "give exactly one of q, like, video"),
    (dict(), "empty query"),
    (dict(hybrid="true", like="abc"), "hybrid search needs a text query"),
    (dict(q="x" * 1001), "over 1000 characters"),
])
def test_bad_requests_are_one_line_400s(server, params, message):
    got = _search(server, **params)
    assert got.status_code == 400 and set(got.json()) == {"error"}, got.text
    assert message in got.json()["error"] and "\n" not in got.json()["error"]


def test_thumbnails_and_the_video_file_with_range_requests(server):
    hit = _search(server, q="harbour", k=1).json()["hits"][0]
    thumb = _get(server, hit["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    from PIL import Image

    assert Image.open(io.BytesIO(thumb.content)).width == 320
    assert _get(server, f"/api/thumbnail/{hit['video_id']}?t=1&w=9999").status_code == 400

    data = open(hit["uri"], "rb").read()
    whole = _get(server, hit["video"])
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = _get(server, hit["video"], headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206 and part.content == data[100:1124]
    assert part.headers["content-range"] == f"bytes 100-1123/{len(data)}"
    tail = _get(server, hit["video"], headers={"Range": f"bytes={len(data) - 10}-"})
    assert tail.status_code == 206 and tail.content == data[-10:]


def test_every_video_response_closes_its_file(server):
    """Sent, refused (416) or cut off by the client: the server's open descriptors do not grow."""
    hit = _search(server, q="harbour", k=1).json()["hits"][0]
    size = os.path.getsize(hit["uri"])

    def open_fds() -> int:
        return len(os.listdir(f"/proc/{server.proc.pid}/fd"))

    _get(server, hit["video"])
    before = open_fds()
    for _ in range(10):
        assert _get(server, hit["video"], headers={"Range": f"bytes={size + 10}-{size + 20}"}).status_code == 416
        assert _get(server, hit["video"], headers={"Range": "bytes=0-99"}).status_code == 206
        with httpx.stream("GET", server.url + hit["video"], timeout=60) as r:  # the client leaves early
            next(r.iter_raw(64))
    deadline = time.monotonic() + 30
    while open_fds() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds() <= before + 2  # a leak would be 10-20 more


@pytest.mark.parametrize("path", ["/api/video/..%2F..%2F..%2Fetc%2Fpasswd", "/api/video/../../etc/passwd",
                                  "/api/video/%2Fetc%2Fpasswd", "/api/thumbnail/..%2Fdb?t=0", "/static/../../etc/passwd",
                                  "/api/video/" + "0" * 32])
def test_only_files_the_store_knows_are_served(server, path):
    got = httpx.get(server.url + path, timeout=60)
    assert got.status_code == 404 and b"root:" not in got.content


def test_a_file_swapped_since_ingest_is_not_served(server, tmp_path):
    """A library file replaced by a symlink to another file, or by a FIFO, is refused (the open
    never blocks), and served again once it is the ingested file again."""
    hits = _search(server, q="portrait", k=4).json()["hits"]
    hit = next(h for h in hits if h["name"] == "h264_rot90.mp4")
    path = hit["uri"]
    keep = tmp_path / "kept.mp4"
    os.rename(path, keep)
    try:
        os.symlink("/etc/passwd", path)
        got = _get(server, hit["video"])
        assert got.status_code == 404 and "changed since it was ingested" in got.json()["error"]
        assert b"root:" not in got.content
        os.remove(path)
        os.mkfifo(path)
        got = _get(server, hit["video"])
        assert got.status_code == 404 and "changed since it was ingested" in got.json()["error"]
        assert _get(server, hit["thumbnail"]).status_code == 404
        os.remove(path)
        got = _get(server, hit["video"])
        assert got.status_code == 404 and "gone" in got.json()["error"]
    finally:
        if os.path.lexists(path):
            os.remove(path)
        os.rename(keep, path)
    assert _get(server, hit["video"]).status_code == 200


def test_no_cors_and_no_other_host(server):
    got = _get(server, "/api/status", headers={"Origin": "https://evil.example"})
    assert got.status_code == 200 and not any(k.lower().startswith("access-control") for k in got.headers)
    preflight = httpx.options(server.url + "/api/search", headers={"Origin": "https://evil.example",
                                                                  "Access-Control-Request-Method": "GET"}, timeout=30)
    assert not any(k.lower().startswith("access-control") for k in preflight.headers)
    rebound = _get(server, "/api/status", headers={"Host": "evil.example:8000"})  # DNS rebinding
    assert rebound.status_code == 403
    page = _get(server, "/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]


def test_concurrent_text_queries_share_forward_passes():
    """16 queries arriving while the model is busy are encoded in far fewer passes, each with the
    vector it would get alone (the first pass is held until all 16 wait: a deterministic test)."""
    from vidclip.model.encoder import Encoder
    from vidclip.server.batcher import TextBatcher

    encoder = Encoder.load(TINY)
    texts = [f"query number {i}" for i in range(16)]
    alone = encoder.encode_text(texts).numpy()  # (16, D)
    queued = threading.Event()

    def encode(batch):
        if not queued.is_set():
            queued.wait(60)  # the first pass waits until the other 15 are queued behind it
        return encoder.encode_text(batch).numpy()

    batcher = TextBatcher(encode)
    out: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, batcher.embed(texts[i]))) for i in range(16)]
    threads[0].start()
    while not batcher._busy:
        pass
    for t in threads[1:]:
        t.start()
    while len(batcher._pending) < 15:
        threading.Event().wait(0.01)
    queued.set()
    for t in threads:
        t.join(60)
    assert batcher.passes == 2 and batcher.texts == 16  # one text, then the 15 that waited
    np.testing.assert_allclose(np.stack([out[i] for i in range(16)]), alone, atol=1e-5)


def test_a_token_guards_every_request(tmp_path, server):
    token = "t" * 8 + "0123456789abcdef"
    srv = start(server.db, server.library, token=token)
    try:
        assert _get(srv, "/api/status").status_code == 401
        assert _get(srv, "/api/status", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert _get(srv, "/api/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert _get(srv, "/?token=wrong-token-0123456789").status_code == 401
        page = _get(srv, f"/?token={token}")
        assert page.status_code == 200 and "httponly" in page.headers["set-cookie"].lower()
        cookie = page.cookies["vidclip_token"]
        assert _get(srv, "/api/status", cookies={"vidclip_token": cookie}).status_code == 200
        assert _get(srv, "/api/status?token=" + token).status_code == 401  # only the page takes it in the URL
    finally:
        stop(srv.proc)


def test_any_other_host_needs_a_token(server):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("VIDCLIP_SERVE_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "vidclip", "serve", "--db", str(server.db), "--host", "0.0.0.0"],
                          capture_output=True, text=True, env=env, timeout=120)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "--host 0.0.0.0 would expose the library" in lines[0], proc.stderr
    short = subprocess.run([sys.executable, "-m", "vidclip", "serve", "--db", str(server.db), "--token", "short"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert short.returncode == 2 and "at least 16 characters" in short.stderr
