"""What the server hands out besides JSON: a library video by its video_id, one frame of it as a
JPEG, and the image a user uploads as a query.

Only files the store knows are served, and only while they are still the file that was ingested.
A request names a video_id, never a path.  Each path the store recorded for that video is opened
(non-blocking, so a FIFO swapped in cannot hang the open), and the open file is used only if it is
a regular file whose size and mtime are the ones recorded at ingest: a file replaced since, or a
symlink re-pointed at another file, is refused.  What is served is that open descriptor
(/proc/self/fd/N), so the file checked and the bytes sent are the same inode.

Uploads are read up to a byte cap, and an image's declared size is checked against a pixel budget
before its pixels are decoded.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass

import numpy as np

from vidclip.errors import InputError, VidclipError
from vidclip.objectstore import is_remote
from vidclip.store.store import Store

VIDEO_ID = re.compile(r"[0-9a-z]{1,64}")
MAX_UPLOAD_BYTES = 16 * 2**20
MAX_IMAGE_PIXELS = 40_000_000  # a 8K x 5K photo; a decompression bomb declares far more
THUMB_WIDTHS = (160, 320, 640)


class NotServed(VidclipError):
    """A video or frame the server will not hand out; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class OpenVideo:
    """A verified, open library file.  `path` names the open descriptor itself."""

    fd: int
    size: int
    name: str

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "OpenVideo":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(store: Store, video_id: str) -> OpenVideo:
    """The ingested file of `video_id`, open and verified (NotServed otherwise)."""
    if not VIDEO_ID.fullmatch(video_id or ""):
        raise NotServed(404, "no such video")
    rows = [r for r in store.sources_of(video_id) if r.get("status") == "ok"]
    if not rows:
        raise NotServed(404, f"no video {video_id} in this store")
    reasons = []
    for row in rows:
        uri = str(row["uri"])
        if is_remote(uri) or "://" in uri:
            reasons.append("its file is in object storage, which this server does not proxy")
            continue
        try:
            fd = os.open(uri, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            reasons.append("its file is gone")
            continue
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != row["size"] or st.st_mtime_ns != row["mtime_ns"]:
            os.close(fd)
            reasons.append("its file changed since it was ingested (ingest again to serve it)")
            continue
        os.set_blocking(fd, True)
        return OpenVideo(fd, st.st_size, os.path.basename(uri))
    raise NotServed(404, f"video {video_id}: {'; '.join(sorted(set(reasons)))}")


def thumbnail_jpeg(store: Store, video_id: str, t: float, width: int) -> bytes:
    """The frame of `video_id` nearest `t` seconds, `width` pixels wide, as JPEG bytes."""
    from PIL import Image

    from vidclip.query.display import JPEG_QUALITY, grab_frames

    if width not in THUMB_WIDTHS:
        raise NotServed(400, f"thumbnail width must be one of {', '.join(map(str, THUMB_WIDTHS))}")
    if not (t >= 0 and t < 1e7):
        raise NotServed(400, f"thumbnail time must be a number of seconds >= 0, got {t}")
    with open_video(store, video_id) as video:
        try:
            frames = grab_frames(video.path, [t])
        except Exception as exc:  # noqa: BLE001 - an undecodable file: say why, as the notebook grid does
            raise NotServed(422, f"video {video_id}: no frame decoded ({' '.join(str(exc).split())[:160]})") from None
    arr = frames.get(t)
    if arr is None:
        raise NotServed(404, f"video {video_id}: no frame near {t:.2f}s")
    img = Image.fromarray(arr)
    img = img.resize((width, max(1, round(img.height * width / img.width))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def decode_upload(data: bytes, name: str = "upload") -> np.ndarray:
    """An uploaded image's bytes -> (H, W, 3) uint8 RGB, refused in one line when it is too large,
    declares too many pixels, or is not an image."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"{name}: the image is over {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data:
        raise InputError(f"{name}: the upload is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InputError(f"{name}: {w}x{h} is over the {MAX_IMAGE_PIXELS:,}-pixel budget for a query image")
            return np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a readable image (JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise InputError(f"{name}: not a readable image ({' '.join(str(exc).split())[:160]})") from None
