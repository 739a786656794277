"""HTML for search results: a grid of cards, one per hit, for Jupyter (``Hits._repr_html_``) or a file.

    from IPython.display import HTML
    HTML(vidclip.query.display.render_hits(hits))

Each card has a thumbnail decoded at the hit's best frame (an inline JPEG, so the HTML is
self-contained), the file name, the score, the moment and an HTML5 player that plays just
that moment (a ``#t=start,end`` media fragment).  Any iterable of objects with the `Hit`
fields works; ``best_t``, ``clip_start_s`` and ``clip_end_s`` are used when present.

A thumbnail that cannot be made (file gone, not decodable) becomes a placeholder that says
why; rendering never raises for a bad file.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, unquote, urlparse

import numpy as np

log = logging.getLogger("vidclip")

__all__ = ["render_hits", "relative_url", "file_uri", "format_time"]

SEEK_GAP_S = 3.0  # targets further apart than this in one video are reached by seeking, not decoding through
JPEG_QUALITY = 80

_GRID = (
    "display:grid;grid-template-columns:repeat(auto-fill,minmax({w}px,1fr));gap:12px;"
    "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:13px;line-height:1.35;"
    "color:#1f2328;max-width:100%"
)
_CARD = (
    "background:#fff;border:1px solid #d0d7de;border-radius:8px;overflow:hidden;"
    "display:flex;flex-direction:column;min-width:0"
)
_MEDIA_BOX = "width:100%;aspect-ratio:16/10;background:#0d1117;display:flex;align-items:center;justify-content:center"
_IMG = "max-width:100%;max-height:100%;object-fit:contain;display:block"
_BODY = "padding:8px 10px;display:flex;flex-direction:column;gap:4px;min-width:0"
_NAME = "font-weight:600;overflow-wrap:anywhere"  # long names wrap: the suffix matters
_ROW = "display:flex;justify-content:space-between;gap:8px;color:#57606a;font-variant-numeric:tabular-nums"
_PLAY = "cursor:pointer;color:#0969da;user-select:none"
_VIDEO = "width:100%;max-height:240px;background:#000;margin-top:4px"
_PLACEHOLDER = "color:#c9d1d9;padding:10px;text-align:center;font-size:12px;word-break:break-word"


# --------------------------------------------------------------------------- public API


def render_hits(
    hits: Iterable,
    thumb_width: int = 240,
    max_items: int = 50,
    *,
    video_url: Callable[[str], str] | None = None,
) -> str:
    """An HTML grid (inline styles, inline JPEG thumbnails, no external assets) for `hits`.

    thumb_width: thumbnail width in pixels, also the minimum card width.
    max_items: at most this many cards; a note says how many were left out.
    video_url: maps a video's URI (``file://...`` for local files) to the URL the player should
      load.  Browsers refuse ``file://`` media in a page served over http, which is what Jupyter
      does, so in a notebook pass e.g. ``relative_url(os.getcwd())`` (a path relative to the
      notebook, which JupyterLab serves) or a function that adds your server's ``files/`` route.
    """
    thumb_width = max(16, int(thumb_width))
    items = list(hits)
    shown = items[: max(0, int(max_items))]
    thumbs = _thumbnails(shown, thumb_width)
    cards = [_card(i, hit, thumbs[i], thumb_width, video_url) for i, hit in enumerate(shown)]
    parts = [f'<div class="vidclip-hits" style="{_GRID.format(w=thumb_width)}">', *cards, "</div>"]
    if not items:
        parts = ['<div class="vidclip-hits" style="color:#57606a;font-family:system-ui,sans-serif">No hits.</div>']
    elif len(items) > len(shown):
        parts.append(
            f'<div style="color:#57606a;font-family:system-ui,sans-serif;margin-top:6px">'
            f"{len(items) - len(shown)} more hit(s) not shown (max_items={len(shown)}).</div>"
        )
    return "\n".join(parts)


def format_time(t: float) -> str:
    """Seconds -> ``mm:ss.s`` (``75.25`` -> ``01:15.3``); hours roll into the minutes."""
    tenths = int(math.floor(max(0.0, float(t)) * 10 + 0.5))  # half up: 0.25 -> 00:00.3
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes:02d}:{tenths // 10:02d}.{tenths % 10}"


def file_uri(uri: str) -> str:
    """A stored URI as a browser URL: local paths become percent-encoded ``file://`` URIs."""
    if _scheme(uri):
        return uri
    return Path(os.path.abspath(uri)).as_uri()


def relative_url(base_dir: str | os.PathLike, prefix: str = "") -> Callable[[str], str]:
    """A `video_url` for media served relative to a page: a local file under `base_dir`
    becomes ``prefix + percent-encoded relative path``; anything else is left as it is.

    In JupyterLab, relative ``src`` URLs in HTML output are resolved against the notebook's
    folder, so ``relative_url(os.getcwd())`` plays videos that live under the notebook's folder.
    For the classic notebook use its files route, e.g. ``relative_url(root, prefix="/files/")``
    with `root` the folder the server was started in.
    """
    base = Path(os.path.abspath(base_dir))

    def _map(uri: str) -> str:
        path = _local_path(uri)
        if path is None:
            return uri
        try:
            rel = Path(os.path.abspath(path)).relative_to(base)
        except ValueError:
            return file_uri(uri)
        return prefix + quote(rel.as_posix())

    return _map


# --------------------------------------------------------------------------- cards


def _card(i: int, hit, thumb: tuple[str | None, str], thumb_width: int, video_url) -> str:
    uri = str(getattr(hit, "uri", ""))
    name = _display_name(uri)
    start, end = _float(getattr(hit, "start_s", 0.0)), _float(getattr(hit, "end_s", 0.0))
    score = _float(getattr(hit, "score", float("nan")))
    best_t = _best_t(hit)
    data_uri, reason = thumb
    if data_uri:
        media = f'<img src="{data_uri}" alt="{html.escape(name)} at {format_time(best_t)}" style="{_IMG}">'
    else:
        media = f'<div style="{_PLACEHOLDER}">no thumbnail<br>{html.escape(reason)}</div>'

    src = file_uri(uri)
    if video_url is not None:
        try:
            src = video_url(src)
        except Exception as exc:  # a user callable: never let it break the whole grid
            log.warning("video_url(%r) failed: %s", src, exc)
    src = f"{src}#t={_fragment_time(start)},{_fragment_time(end)}"

    clip = ""
    c0, c1 = getattr(hit, "clip_start_s", None), getattr(hit, "clip_end_s", None)
    if c0 is not None and c1 is not None and (abs(c0 - start) > 1e-3 or abs(c1 - end) > 1e-3):
        clip = f'<div style="{_ROW}"><span>clip</span><span>{format_time(c0)}–{format_time(c1)}</span></div>'

    return (
        f'<div class="vidclip-hit" style="{_CARD}">'
        f'<div style="{_MEDIA_BOX}" title="best frame at {format_time(best_t)}">{media}</div>'
        f'<div style="{_BODY}">'
        f'<div style="{_NAME}" title="{html.escape(uri)}">{i + 1}. {_breakable(name)}</div>'
        f'<div style="{_ROW}"><span>score {score:.4f}</span>'
        f"<span>{format_time(start)}–{format_time(end)}</span></div>"
        f"{clip}"
        # Collapsed until asked for; preload="none": nothing is fetched until the user presses play.
        f'<details><summary style="{_PLAY}">play this moment</summary>'
        f'<video controls preload="none" src="{html.escape(src)}" style="{_VIDEO}"></video></details>'
        "</div></div>"
    )


def _breakable(name: str) -> str:
    """Escaped, with line-break opportunities after _ . - so long file names wrap at natural points."""
    out = html.escape(name)
    for ch in "_.-":
        out = out.replace(ch, ch + "<wbr>")
    return out


def _display_name(uri: str) -> str:
    path = _local_path(uri)
    if path is not None:
        return os.path.basename(path) or path
    return urlparse(uri).path.rsplit("/", 1)[-1] or uri


def _best_t(hit) -> float:
    t = getattr(hit, "best_t", None)
    if t is not None:
        return _float(t)
    return (_float(getattr(hit, "start_s", 0.0)) + _float(getattr(hit, "end_s", 0.0))) / 2


def _fragment_time(t: float) -> str:
    return f"{max(0.0, t):.3f}".rstrip("0").rstrip(".")


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _scheme(uri: str) -> str:
    scheme = urlparse(uri).scheme
    return "" if len(scheme) <= 1 else scheme.lower()  # "C:\\x" has scheme "c": a Windows path


def _local_path(uri: str) -> str | None:
    scheme = _scheme(uri)
    if not scheme:
        return uri
    if scheme == "file":
        return unquote(urlparse(uri).path)
    return None


# --------------------------------------------------------------------------- thumbnails


def _thumbnails(hits: list, thumb_width: int) -> list[tuple[str | None, str]]:
    """One (data URI or None, reason) per hit; each video is opened and decoded once."""
    by_uri: dict[str, list[int]] = {}
    for i, hit in enumerate(hits):
        by_uri.setdefault(str(getattr(hit, "uri", "")), []).append(i)
    out: list[tuple[str | None, str]] = [(None, "")] * len(hits)
    for uri, idx in by_uri.items():
        times = [_best_t(hits[i]) for i in idx]
        try:
            frames = grab_frames(uri, times)
        except Exception as exc:  # missing, unreadable, not a video: a placeholder says why
            reason = _reason(exc)
            for i in idx:
                out[i] = (None, reason)
            continue
        for i, t in zip(idx, times):
            arr = frames.get(t)
            if arr is None:
                out[i] = (None, f"no frame decoded near {format_time(t)}")
                continue
            try:
                out[i] = (_jpeg_data_uri(arr, thumb_width), "")
            except Exception as exc:
                out[i] = (None, _reason(exc))
    return out


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def grab_frames(uri: str, times: list[float]) -> dict[float, np.ndarray]:
    """{t: (H, W, 3) uint8 upright RGB of the frame nearest t} for each t in `times`.

    Times are seconds from the stream's start (as stored: from pts).  Targets are visited in
    order; one close to the previous is reached by decoding forward, a far one by seeking."""
    from vidclip.container import VideoInput

    path = _local_path(uri)
    if path is None:
        if _scheme(uri) not in ("http", "https"):
            raise ValueError(f"{_scheme(uri)}:// videos are not decoded for thumbnails")
        path = uri
    elif not os.path.isfile(path):
        raise FileNotFoundError(path)

    found: dict[float, np.ndarray] = {}
    with VideoInput(path) as video:  # drained and closed on every exit: vidclip.container says why
        if video.stream is None:
            raise ValueError("no video stream")
        stream = video.stream
        tb = float(stream.time_base)
        origin = stream.start_time

        def time_of(frame) -> float:
            nonlocal origin
            if origin is None:
                origin = frame.pts
            return (frame.pts - origin) * tb

        frames = None
        prev = cur = None  # (time, frame) pairs around the last target
        for t in sorted(set(times)):
            if frames is None or (cur is not None and t - cur[0] > SEEK_GAP_S):
                target = (origin or 0) + int(max(0.0, t - 0.5) / tb)
                if frames is not None or t > SEEK_GAP_S:
                    video.seek(target)
                frames = video.frames()
                prev, cur = None, _next(frames, time_of)
            while cur is not None and cur[0] < t:
                prev, cur = cur, _next(frames, time_of)
            candidates = [c for c in (prev, cur) if c is not None]
            if not candidates:
                continue
            best = min(candidates, key=lambda c: abs(c[0] - t))
            found[t] = _upright(best[1])
        prev = cur = None
    return found


def _next(frames, time_of):
    frame = next(frames, None)
    return None if frame is None else (time_of(frame), frame)


def _upright(frame) -> np.ndarray:
    arr = frame.to_ndarray(format="rgb24")  # (H, W, 3) as stored
    k = (int(getattr(frame, "rotation", 0) or 0) // 90) % 4  # counter-clockwise display rotation
    return np.ascontiguousarray(np.rot90(arr, k=k)) if k else arr


def _jpeg_data_uri(arr: np.ndarray, width: int) -> str:
    from PIL import Image

    img = Image.fromarray(arr)
    if img.width != width:
        height = max(1, round(img.height * width / img.width))
        img = img.resize((width, height), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
