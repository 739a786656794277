"""Query vectors: a text, an image, text + image, or a video (span) -> one normalised (D,) vector
in the store's embedding space.

A text query reaches the model's tokenizer as typed (only surrounding whitespace is stripped): no
case folding or transliteration here, so Chinese, Cyrillic or Arabic queries reach a multilingual
text tower intact.  Its length limit is the model's, in tokens: the tokenizer keeps the first
`context_length` tokens (77 for OpenAI-style CLIP, start and end tokens included) and the model never
sees the rest; a longer query is embedded that way, with a warning that says how many tokens were
read.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from vidclip.config import DecodeConfig, SamplingConfig
from vidclip.errors import InputError, QueryError
from vidclip.ingest.sampling import select_for_clip
from vidclip.ingest.video import aggregate, module_frames, read_video

log = logging.getLogger("vidclip")


def check_query(text, image, video, span) -> bool:
    """Whether the query has text; a query of the wrong shape is one line."""
    has_text = text is not None and bool(str(text).strip())
    if not has_text and image is None and video is None:
        raise QueryError("empty query: give a text, an image, a video, or a text and an image")
    if video is not None and (has_text or image is not None):
        raise QueryError("a video query cannot be combined with a text or an image")
    if span is not None and video is None:
        raise QueryError("span applies to video queries only")
    return has_text


def embed_text_image(encoder, text: str | None, image, weights) -> np.ndarray:
    """A text, an image, or both mixed by `weights` (text, image), default (0.5, 0.5): the weighted
    sum of their normalised embeddings, renormalised.  -> (D,) float32."""
    parts = []
    if image is not None:
        parts.append(encoder.encode_images([load_image(image)])[0].numpy())  # (D,)
    if text is not None and str(text).strip():
        query = str(text).strip()
        warn_if_cut(encoder, query)
        parts.append(encoder.encode_text([query])[0].numpy())  # (D,)
    if len(parts) == 1:
        if weights is not None:
            raise QueryError("weights apply to a text and an image given together")
        return parts[0].astype(np.float32)  # (D,)
    w = (0.5, 0.5) if weights is None else weights  # (text, image)
    if len(w) != 2 or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise QueryError(f"weights must be two non-negative numbers (text, image), not both zero, got {weights!r}")
    image_vec, text_vec = parts  # each (D,), normalised
    mixed = float(w[0]) * text_vec + float(w[1]) * image_vec
    norm = float(np.linalg.norm(mixed))
    if norm < 1e-8:
        raise QueryError("the weighted text and image embeddings cancel out")
    return (mixed / norm).astype(np.float32)


def warn_if_cut(encoder, text: str) -> None:
    """A warning when `text` is longer than the model reads (its tokenizer cuts it there)."""
    n, limit = encoder.count_tokens(text), encoder.context_length
    if n is not None and n > limit:
        log.warning("the query is %d tokens; model %s reads the first %d (start and end included), the rest is ignored",
                    n, encoder.identity.name, limit)


def check_video(path, span) -> tuple[str, tuple[float, float] | None]:
    """(path, (start_s, end_s) or None) of a video query, or one line on what is wrong with it."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such video file")
    if span is None:
        return path, None
    try:
        lo, hi = (float(x) for x in span)
    except (TypeError, ValueError):
        lo, hi = float("nan"), float("nan")
    if not 0 <= lo < hi:
        raise QueryError(f"span must be (start_s, end_s) with 0 <= start_s < end_s, got {span!r}")
    return path, (lo, hi)


def embed_video(path, span, encoder, aggregator, sampling: SamplingConfig) -> np.ndarray:
    """A video file (or a span of it) embedded as the store embeds a clip: its sampling, the
    encoder, then the store's temporal module over (at most max_frames of) the sampled frames."""
    path, span = check_video(path, span)
    lo, hi = span if span is not None else (0.0, float("inf"))
    facts, reader = read_video(path, sampling, DecodeConfig(), encoder)
    # choose the planned frames first (those in the span, then at most max_frames of them), so
    # only they are kept and reading stops once they are all decoded
    inside = np.arange(len(facts.times)) if span is None else np.flatnonzero((facts.times >= lo) & (facts.times < hi))
    wanted = set(inside[select_for_clip(len(inside), sampling.max_frames)].tolist()) if len(inside) else set()
    got: dict[int, np.ndarray] = {}
    if wanted:
        for chunk in reader.chunks():
            for p, f in zip(chunk.position.tolist(), chunk.frames):
                if p in wanted:
                    got[p] = f
            if len(got) == len(wanted):
                break
    if not got:
        where = f" in [{lo}, {hi})" if span is not None else ""
        raise QueryError(f"{path}: no sampled frame{where} could be decoded")
    keep = sorted(got)
    from vidclip.model.encoder import split_norms  # torch: never at import time (decode children import this package)

    raw = encoder.encode_frames([got[p] for p in keep], normalize=False).numpy()  # (M, D)
    unit, norms = split_norms(raw)  # as ingest stores them
    fed = module_frames(aggregator, unit, norms, path)  # (M, D)
    return aggregate(aggregator, fed, [np.arange(len(keep))])[0].astype(np.float32)  # (D,)


def load_image(image) -> np.ndarray:
    """A path, PIL image or (H, W, 3) uint8 array -> (H, W, 3) uint8 RGB array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = str(image)
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such image file")
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{path}: not a readable image ({exc})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"image array must be (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    return arr
