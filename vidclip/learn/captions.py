"""Caption files, and which stored video each caption describes.  No torch, no decoding.

Accepted files (one caption per row; a row's `video` is a store uri, a file name, a file stem or a
video_id; `start_s`/`end_s`, when given, narrow the caption to [start_s, end_s) of that video):

* ``*.jsonl``  one JSON object per line: ``{"video", "caption", "start_s"?, "end_s"?}``
* ``*.json``   a JSON list of such objects, or MSR-VTT's ``MSRVTT_data.json``
               (``{"videos": [{"video_id": "video0", ...}], "sentences": [{"video_id", "caption", "sen_id"}]}``:
               every sentence becomes a caption)
* ``*.csv``    a header with ``video`` (or ``video_id``) and ``caption`` (or ``sentence``), e.g. MSR-VTT's
               1k-A test list ``MSRVTT_JSFUSION_test.csv`` (key, vid_key, video_id, sentence); or a
               split list with a ``video_id`` column only (``MSRVTT_train.9k.csv``), whose captions are
               the sentences of those videos in the ``MSRVTT_data.json`` next to it (CLIP4Clip's
               ``--expand_msrvtt_sentences``).

MSR-VTT ids ("video123") find their store video through the stem of its uri (``.../video123.mp4``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from vidclip.errors import InputError, StoreError
from vidclip.store.store import Store
from vidclip.store.schema import OK

log = logging.getLogger("vidclip")

MSRVTT_DATA = "MSRVTT_data.json"
VIDEO_KEYS = ("video", "video_id")
TEXT_KEYS = ("caption", "sentence")


@dataclass(frozen=True)
class Caption:
    """One row of a caption file.  `where` is "file:line" for messages."""

    video: str
    text: str
    start_s: float | None = None
    end_s: float | None = None
    where: str = ""


@dataclass(frozen=True)
class Pair:
    """A caption matched to a stored video: the training / evaluation unit's text side."""

    video_id: str
    text: str
    start_s: float | None = None  # None: the whole video
    end_s: float | None = None

    @property
    def span(self) -> tuple[str, float | None, float | None]:
        return (self.video_id, self.start_s, self.end_s)


@dataclass(frozen=True)
class Matched:
    pairs: list[Pair]
    skipped: int  # captions whose video is not in the store (only with skip_missing)
    missing: list[str]  # distinct unknown videos, first ones only


# -- reading ----------------------------------------------------------------------------------------
def read(path: str | os.PathLike) -> list[Caption]:
    """Every caption of a caption file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such caption file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        captions = _read_jsonl(path)
    elif suffix == ".json":
        captions = _read_json(path)
    elif suffix == ".csv":
        captions = _read_csv(path)
    else:
        raise InputError(f"{path}: unknown caption file type {suffix or '(none)'!r}; use .jsonl, .json or .csv")
    if not captions:
        raise InputError(f"{path}: holds no caption")
    return captions


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read caption file ({exc})") from None


def _read_jsonl(path: Path) -> list[Caption]:
    out = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not a JSON object ({exc.msg})") from None
        out.append(_caption(row, f"{path}:{n}"))
    return out


def _read_json(path: Path) -> list[Caption]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict) and "sentences" in data:
        return _msrvtt_sentences(path, data, None)
    if isinstance(data, list):
        return [_caption(row, f"{path}:[{i}]") for i, row in enumerate(data)]
    raise InputError(f"{path}: expected a list of caption objects or MSR-VTT's {{'videos', 'sentences'}} layout")


def _read_csv(path: Path) -> list[Caption]:
    text = _read_text(path)
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip() for f in (reader.fieldnames or [])]
    reader.fieldnames = fields
    if not any(k in fields for k in VIDEO_KEYS):
        raise InputError(f"{path}: CSV header {fields} has no 'video' or 'video_id' column")
    rows = list(reader)
    if any(k in fields for k in TEXT_KEYS):
        return [_caption(row, f"{path}:{i}") for i, row in enumerate(rows, 2)]
    # An MSR-VTT split list (video_id only): its captions live in MSRVTT_data.json beside it.
    data_path = path.parent / MSRVTT_DATA
    if not data_path.is_file():
        raise InputError(
            f"{path}: lists videos but no captions (an MSR-VTT split?); expected {MSRVTT_DATA} beside it, "
            f"or add a 'caption' column"
        )
    try:
        data = json.loads(_read_text(data_path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{data_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    key = "video_id" if "video_id" in fields else "video"
    wanted = {str(r[key]).strip() for r in rows if r.get(key)}
    return _msrvtt_sentences(data_path, data, wanted)


def _msrvtt_sentences(path: Path, data: dict, wanted: set[str] | None) -> list[Caption]:
    sentences = data.get("sentences")
    if not isinstance(sentences, list):
        raise InputError(f"{path}: 'sentences' must be a list of {{'video_id', 'caption'}} objects")
    out = []
    for i, row in enumerate(sentences):
        if not isinstance(row, dict) or "video_id" not in row or "caption" not in row:
            raise InputError(f"{path}: sentences[{i}] lacks 'video_id' or 'caption'")
        if wanted is None or str(row["video_id"]) in wanted:
            out.append(_caption(row, f"{path}:sentences[{i}]"))
    if wanted is not None:
        found = {c.video for c in out}
        lacking = sorted(wanted - found)
        if lacking:
            raise InputError(f"{path}: no sentence for {len(lacking)} listed video(s), e.g. {lacking[0]!r}")
    return out


def _caption(row, where: str) -> Caption:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected an object with 'video' and 'caption'")
    video = next((row[k] for k in VIDEO_KEYS if row.get(k) not in (None, "")), None)
    text = next((row[k] for k in TEXT_KEYS if row.get(k) not in (None, "")), None)
    if video is None:
        raise InputError(f"{where}: no 'video' (or 'video_id')")
    if text is None or not str(text).strip():
        raise InputError(f"{where}: no 'caption' (or 'sentence') text")
    start, end = _seconds(row.get("start_s"), where, "start_s"), _seconds(row.get("end_s"), where, "end_s")
    if (start is None) != (end is None):
        raise InputError(f"{where}: give both start_s and end_s, or neither")
    if start is not None and not 0 <= start < end:
        raise InputError(f"{where}: span must satisfy 0 <= start_s < end_s, got [{start}, {end})")
    return Caption(video=str(video).strip(), text=" ".join(str(text).split()), start_s=start, end_s=end, where=where)


def _seconds(value, where: str, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {name} must be a number of seconds, got {value!r}") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise InputError(f"{where}: {name} must be finite, got {value!r}")
    return seconds


# -- matching to the store --------------------------------------------------------------------------
class VideoIndex:
    """Names by which a caption may refer to a stored, ok video: its video_id, any uri that holds it,
    a uri's file name, or its file stem.  A name shared by different videos is ambiguous."""

    def __init__(self, store: Store):
        if not store.has_table("videos"):
            raise StoreError(f"{store.uri}: not a vidclip store (no 'videos' table)")
        videos = store.table("videos").search().select(["video_id", "uri", "status"]).limit(None).to_arrow().to_pylist()
        ok = {r["video_id"] for r in videos if r["status"] == OK}
        uris = [(r["uri"], r["video_id"]) for r in videos if r["video_id"] in ok and r["uri"]]
        uris += [(uri, vid) for uri, row in store.sources().items() if (vid := row["video_id"]) in ok]
        self.ids = ok
        self._exact: dict[str, set[str]] = defaultdict(set)
        self._loose: dict[str, set[str]] = defaultdict(set)
        for uri, vid in uris:
            self._exact[uri].add(vid)
            name = uri.replace("\\", "/").rsplit("/", 1)[-1]
            self._loose[name].add(vid)
            stem = name.rsplit(".", 1)[0] if "." in name else name
            self._loose[stem].add(vid)
        self._uris: dict[str, list[str]] = defaultdict(list)
        for uri, vid in uris:
            self._uris[vid].append(uri)

    def find(self, name: str, base_dir: Path | None = None) -> str | None:
        """The video_id `name` refers to, or None.  Raises InputError when it is ambiguous."""
        if name in self.ids:
            return name
        candidates = [name]
        if base_dir is not None and not os.path.isabs(name):
            candidates.append(str((base_dir / name).resolve()))
        candidates.append(os.path.abspath(name))
        for uri in candidates:
            found = self._exact.get(uri)
            if found and len(found) == 1:
                return next(iter(found))
        found = self._loose.get(name.replace("\\", "/").rsplit("/", 1)[-1], set())
        if len(found) > 1:
            examples = sorted(u for v in found for u in self._uris[v])[:3]
            raise InputError(f"caption video {name!r} matches {len(found)} stored videos ({', '.join(examples)}); "
                             "name it by its full uri or video_id")
        return next(iter(found)) if found else None


def match(captions: list[Caption], store: Store, skip_missing: bool = False, base_dir: Path | None = None) -> Matched:
    """Map every caption to a stored ok video.  An unknown video is an InputError naming it, or with
    `skip_missing` its captions are counted as skipped."""
    index = VideoIndex(store)
    pairs: list[Pair] = []
    missing: dict[str, int] = {}
    resolved: dict[str, str | None] = {}
    for cap in captions:
        if cap.video not in resolved:
            resolved[cap.video] = index.find(cap.video, base_dir)
        vid = resolved[cap.video]
        if vid is None:
            if not skip_missing:
                raise InputError(f"{cap.where}: caption refers to video {cap.video!r}, which is not an ingested (ok) "
                                 f"video of {store.uri}; ingest it or pass --skip-missing")
            missing[cap.video] = missing.get(cap.video, 0) + 1
            continue
        pairs.append(Pair(video_id=vid, text=cap.text, start_s=cap.start_s, end_s=cap.end_s))
    skipped = sum(missing.values())
    if skipped:
        log.warning("skipped %d caption(s) of %d video(s) not in the store, e.g. %r", skipped, len(missing), next(iter(missing)))
    if not pairs:
        raise InputError(f"no caption refers to a video of {store.uri}" + (f" ({skipped} skipped)" if skipped else ""))
    return Matched(pairs=pairs, skipped=skipped, missing=list(missing)[:20])


def load(path: str | os.PathLike, store: Store, skip_missing: bool = False) -> Matched:
    """read() then match(), relative paths in the file taken from the file's folder first."""
    return match(read(path), store, skip_missing=skip_missing, base_dir=Path(path).resolve().parent)
