"""The Python API: a video library backed by one store.

    lib = vidclip.open("videos.lancedb")                 # existing store: its own model and settings
    lib = vidclip.open("new.lancedb", model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    report = lib.ingest(["/data/videos"])
    hits = lib.search("a dog catches a frisbee", k=10)
    hits = lib.search(image="frame.jpg", per_video=3)
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Iterable

import numpy as np

from vidclip.integrity import quick_check
from vidclip.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, DecodeConfig, ModelConfig, SamplingConfig
from vidclip.errors import InputError, QueryError, StoreMismatchError
from vidclip.ingest import IngestReport
from vidclip.rerank import DEFAULT_ALPHA, DEFAULT_RERANK_K, check_rerank
from vidclip.search import MAX_K, Hits, check_ann, check_request, search_vector

if TYPE_CHECKING:
    from pipelines.options import JobOptions
    from vidclip.committer import CommitPolicy
from vidclip.store import Store, describe_mismatch
from vidclip.watchdog import DEFAULT_STALL_S

log = logging.getLogger("vidclip")

MAX_QUERY_CHARS = 1000
FUSIONS = ("rrf", "weighted")
DEFAULT_TEMPORAL = "mean"


def open(
    db: str | os.PathLike,
    model: str | ModelConfig | None = None,
    pretrained: str | None = None,
    *,
    model_config: str | None = None,
    device: str = "auto",
    create: bool = True,
    storage_options: dict | None = None,
    exact_memory_mb: float | None = None,
) -> "Library":
    """Open (or create) a library.  For an existing store, `model`/`pretrained` may be left out:
    the store's own are used, and any that are given must match them.

    exact_memory_mb: RAM for the in-memory exact search over a table without an ANN index, and
    for the in-memory video_id -> uri directory, each (vidclip/exact.py; default 1024 MB, about
    520k 512-d clips); 0 leaves both to LanceDB."""
    store = Store.open(str(db), create=create, storage_options=storage_options)
    if exact_memory_mb is not None:
        if isinstance(exact_memory_mb, bool) or not isinstance(exact_memory_mb, (int, float)) or not exact_memory_mb >= 0:
            raise QueryError(f"exact_memory_mb must be >= 0, got {exact_memory_mb!r}")
        store.exact.max_bytes = store.directory.max_bytes = int(exact_memory_mb * 2**20)
    if isinstance(model, ModelConfig):
        requested = model
    else:
        requested = _model_from(store, model, pretrained, model_config, device)
    return Library(store, requested)


def _model_from(store: Store, name, pretrained, config_path, device) -> ModelConfig:
    recorded = store.meta.get("model_source")
    if recorded is None:
        cfg = ModelConfig(
            name=name or DEFAULT_MODEL,
            pretrained=pretrained or DEFAULT_PRETRAINED,
            config_path=os.path.abspath(config_path) if config_path else None,
            device=device,
        )
        return cfg
    if name and name != recorded["name"]:
        raise StoreMismatchError(f"{store.uri}: {describe_mismatch('model', recorded['name'], name)}")
    if pretrained and pretrained != recorded["pretrained"] and not os.path.isfile(pretrained):
        raise StoreMismatchError(f"{store.uri}: {describe_mismatch('pretrained weights', recorded['pretrained'], pretrained)}")
    return ModelConfig(
        name=recorded["name"],
        pretrained=pretrained or recorded["pretrained"],
        config_path=os.path.abspath(config_path) if config_path else recorded.get("config_path"),
        device=device,
        seed=int(recorded.get("seed", 0)),
    )


class Library:
    def __init__(self, store: Store, model: ModelConfig):
        self.store = store
        self.model_config = model
        self._encoder = None
        self._aggregator = None

    @property
    def uri(self) -> str:
        return self.store.uri

    # -- model --------------------------------------------------------------------------------------
    @property
    def encoder(self):
        """The CLIP encoder, built on first use and checked against the store's recorded model."""
        if self._encoder is None:
            from vidclip.encoder import Encoder

            encoder = Encoder.load(self.model_config)
            self._check_model(encoder)
            self._encoder = encoder
        return self._encoder

    def _check_model(self, encoder) -> None:
        ident = encoder.identity
        want = {"name": ident.name, "weights_sha256": ident.weights_sha256, "dim": int(ident.dim)}
        cfg = self.model_config
        source = {"name": cfg.name, "pretrained": cfg.pretrained, "config_path": cfg.config_path, "seed": cfg.seed}
        self.store.check_settings({"model": want})
        if "model_source" not in self.store.meta:
            self.store.set_meta({"model_source": source})

    def _temporal(self):
        spec = self.store.meta.get("temporal") or {"name": DEFAULT_TEMPORAL}
        if self._aggregator is None or self._aggregator[0] != spec:  # a reindex may have switched it
            import temporal

            if spec.get("checkpoint"):
                module = temporal.load(spec["checkpoint"], expect_clip_model=self.encoder.identity.name)
                if temporal.fingerprint(spec["checkpoint"]) != spec.get("fingerprint"):
                    raise StoreMismatchError(
                        f"{self.uri}: temporal checkpoint {spec['checkpoint']} changed since the store was indexed with it"
                    )
            else:
                module = temporal.build(spec["name"], self.encoder.dim)
            self._aggregator = (spec, module.eval())
        return self._aggregator

    # -- ingest -------------------------------------------------------------------------------------
    def ingest(
        self,
        paths: Iterable[str] | str,
        sampling: SamplingConfig | None = None,
        *,
        decode: DecodeConfig = DecodeConfig(),
        batch_size: int | None = None,
        retry_failed: bool = False,
        progress: bool = True,
        ray: "JobOptions | bool" = False,
        commit: "CommitPolicy | None" = None,
        metadata: str | os.PathLike | None = None,
        stall_s: float = DEFAULT_STALL_S,
        decode_workers: int = 1,
    ) -> IngestReport:
        """Ingest files and folders (recursively).  Files already in the store are skipped; files
        that cannot be decoded are recorded as failed with their reason, never fatal.

        ray: False runs the in-process loop; True or a `pipelines.options.JobOptions` runs the
        Ray Data job (a local Ray is started on demand unless the options name an address).
        decode_workers: videos decoded at once by the in-process loop, each in its own sandbox
        child (on Ray, JobOptions.decode_workers).

        metadata: a sidecar manifest (CSV / JSONL / Parquet with a `uri` column) whose other
        columns become each matching file's metadata (merged over a manifest input's own);
        title / description / tags become filterable, full-text searchable columns."""
        from vidclip.committer import CommitPolicy
        from vidclip.manifest import list_inputs

        commit = commit or CommitPolicy()
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        entries = list(list_inputs([str(p) for p in paths]))
        if metadata is not None:
            entries = _merge_metadata(entries, str(metadata))
        sampling = self._sampling(sampling)
        spec = self.store.meta.get("temporal") or {"name": DEFAULT_TEMPORAL}
        settings = {"sampling": sampling.to_dict(), "temporal": spec}
        self.store.check_settings(settings, record=False)  # cheap checks before the model loads
        quick_check(self.store)  # never ingest "around" lost rows (their videos would be skipped as ok)
        # The writer lease before the model: a second writer is refused at once, and the model's
        # own record in the store (encoder -> _check_model) is written under the lease too.
        with self.store.writing("ingest"):
            encoder = self.encoder
            if batch_size is not None:
                encoder.batch_size = int(batch_size)
            spec, aggregator = self._temporal()
            self.store.check_settings(settings)
            return self._run_ingest(entries, encoder, spec, aggregator, sampling, decode, ray, retry_failed, commit, progress, stall_s, decode_workers)

    def _run_ingest(self, entries, encoder, spec, aggregator, sampling, decode, ray, retry_failed, commit, progress, stall_s, decode_workers) -> IngestReport:
        if ray:
            from pipelines.ingest_job import run_on_ray
            from pipelines.options import JobOptions
            from vidclip.geometry import FrameGeometry

            options = ray if isinstance(ray, JobOptions) else JobOptions(batch_size=encoder.batch_size)
            return run_on_ray(
                self.store, entries, self.model_config, encoder.dim, FrameGeometry.of_model(encoder.model),
                aggregator, spec["name"], sampling, decode, options,
                retry_failed=retry_failed, commit=commit, progress=progress, total=len(entries), stall_s=stall_s,
            )
        from vidclip.runner import run_in_process

        return run_in_process(
            self.store, entries, encoder, aggregator, spec["name"], sampling, decode,
            retry_failed=retry_failed, commit=commit, progress=progress, total=len(entries), stall_s=stall_s,
            decode_workers=decode_workers,
        )

    def _sampling(self, requested: SamplingConfig | None) -> SamplingConfig:
        recorded = self.store.meta.get("sampling")
        if requested is None:
            return SamplingConfig(**recorded) if recorded else SamplingConfig()
        return requested

    # -- search -------------------------------------------------------------------------------------
    def search(
        self,
        text: str | None = None,
        *,
        image=None,
        video=None,
        span: tuple[float, float] | None = None,
        weights: tuple[float, float] | None = None,
        k: int = 10,
        per_video: int = 1,
        level: str = "clip",
        where: dict | None = None,
        where_sql: str | None = None,
        rerank: str | None = None,
        rerank_k: int = DEFAULT_RERANK_K,
        alpha: float = DEFAULT_ALPHA,
        hybrid: bool = False,
        fusion: str = "rrf",
        rrf_k: int = 60,
        text_weight: float = 0.5,
        nprobes: int | None = None,
        refine_factor: int | None = None,
    ) -> Hits:
        """Top-k hits for a query:

        text / image (a path, a PIL image or an (H, W, 3) uint8 array) / video (a file, optionally
        with span=(start_s, end_s)); text and image together are combined with `weights`
        (default (0.5, 0.5)): the weighted sum of their normalised embeddings, renormalised.

        where: structured filter over videos (vidclip.filters: validated, typed, quoted).
        where_sql: RAW SQL over the videos table, ANDed with `where`: TRUSTED INPUT ONLY.
        rerank: None (first stage only, default) | "max" | "mean" | "fusion" (vidclip.rerank), over
        the top `rerank_k` first-stage candidates; alpha weighs the clip score in "fusion".
        hybrid: fuse the vector ranking with BM25 full-text search over title/description/tags
        (needs `text`): fusion="rrf" (score = sum of 1/(rrf_k + rank), default) or "weighted"
        (text_weight * min-max-normalised BM25 + (1 - text_weight) * normalised cosine).
        nprobes / refine_factor: ANN settings, passed only when given."""
        from vidclip.filters import combine_where

        check_request(k, per_video, level)
        check_rerank(rerank, rerank_k, alpha)
        check_ann(nprobes, refine_factor)
        if fusion not in FUSIONS:
            raise QueryError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1:
            raise QueryError(f"rrf_k must be an integer >= 1, got {rrf_k!r}")
        if isinstance(text_weight, bool) or not isinstance(text_weight, (int, float)) or not 0.0 <= text_weight <= 1.0:
            raise QueryError(f"text_weight must be a number in [0, 1], got {text_weight!r}")
        if hybrid and (text is None or not str(text).strip()):
            raise QueryError("hybrid search needs a text query")
        quick_check(self.store)  # a damaged store is one line, never silently missing hits
        sql = combine_where(self.store, where, where_sql)
        query = self.embed_query(text=text, image=image, video=video, span=span, weights=weights)
        options = dict(where=sql, rerank=rerank, rerank_k=rerank_k, alpha=alpha, nprobes=nprobes, refine_factor=refine_factor)
        if not hybrid:
            return search_vector(self.store, query, k=k, per_video=per_video, level=level, **options)
        return self._hybrid(str(text).strip()[:MAX_QUERY_CHARS], query, k, per_video, level, options, fusion, rrf_k, text_weight)

    def _hybrid(self, text, query, k, per_video, level, options, fusion, rrf_k, text_weight) -> Hits:
        """Vector hits fused with full-text (BM25) hits at the video level: every hit of a video
        shares that video's text rank.  Videos found only by text get their best clip(s) from a
        vector search restricted to them."""
        import dataclasses

        from vidclip.store import sql_in

        depth = min(MAX_K, max(4 * k, 50))
        vec = search_vector(self.store, query, k=depth, per_video=per_video, level=level, **options)
        fts = self.store.fts_search(text, depth, options["where"]).to_pylist()
        text_rank = {r["video_id"]: i for i, r in enumerate(fts)}
        text_score = {r["video_id"]: float(r["_score"]) for r in fts}
        seen = {h.video_id for h in vec}
        only_text = [v for v in text_rank if v not in seen]
        if only_text:
            extra = dict(options, where=" AND ".join(p for p in (options["where"], sql_in("video_id", only_text)) if p))
            vec = Hits([*vec, *search_vector(self.store, query, k=min(MAX_K, len(only_text) * (per_video if level == "clip" else 1)),
                                             per_video=per_video, level=level, **extra)])
        vec_rank = {id(h): i for i, h in enumerate(sorted(vec, key=lambda h: -h.score))}

        def norm(values: dict) -> dict:
            if not values:
                return {}
            lo, hi = min(values.values()), max(values.values())
            return {key: (v - lo) / (hi - lo) if hi > lo else 1.0 for key, v in values.items()}

        vnorm = norm({id(h): h.score for h in vec})
        tnorm = norm(text_score)
        fused = []
        for h in vec:
            if fusion == "rrf":
                s = 1.0 / (rrf_k + vec_rank[id(h)] + 1)
                if h.video_id in text_rank:
                    s += 1.0 / (rrf_k + text_rank[h.video_id] + 1)
            else:
                s = (1.0 - text_weight) * vnorm[id(h)] + text_weight * tnorm.get(h.video_id, 0.0)
            fused.append(dataclasses.replace(h, score=round(s, 6)))
        fused.sort(key=lambda h: -h.score)
        return Hits(fused[:k])

    def embed_query(self, text: str | None = None, image=None, video=None, span=None, weights=None) -> np.ndarray:
        """The normalised query vector (D,) for a text, an image, a video (span), or text + image."""
        has_text = text is not None and bool(str(text).strip())
        if not has_text and image is None and video is None:
            raise QueryError("empty query: give a text, an image, a video, or a text and an image")
        if video is not None and (has_text or image is not None):
            raise QueryError("a video query cannot be combined with a text or an image")
        if span is not None and video is None:
            raise QueryError("span applies to video queries only")
        if self.store.meta.get("model") is None:
            raise QueryError(f"{self.uri}: the store is empty; ingest videos first")
        if video is not None:
            return self.embed_video(video, span)
        parts = []
        if image is not None:
            parts.append(self.encoder.encode_images([_load_image(image)])[0].numpy())
        if has_text:
            text = str(text).strip()[:MAX_QUERY_CHARS]
            parts.append(self.encoder.encode_text([text])[0].numpy())
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

    def embed_video(self, path, span: tuple[float, float] | None = None) -> np.ndarray:
        """A video file (or a span of it) embedded as the store embeds a clip: its sampling, the
        encoder, then the store's temporal module over (at most max_frames of) the sampled frames."""
        from vidclip.ingest import aggregate, read_video
        from vidclip.sampling import select_for_clip

        path = str(path)
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such video file")
        if span is not None:
            try:
                lo, hi = (float(x) for x in span)
            except (TypeError, ValueError):
                lo, hi = float("nan"), float("nan")
            if not 0 <= lo < hi:
                raise QueryError(f"span must be (start_s, end_s) with 0 <= start_s < end_s, got {span!r}")
        sampling = self._sampling(None)
        encoder = self.encoder
        facts, reader = read_video(path, sampling, DecodeConfig(), encoder.decode_size)
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
        vectors = encoder.encode_frames([got[p] for p in keep]).numpy()  # (M, D)
        _, aggregator = self._temporal()
        return aggregate(aggregator, vectors, [np.arange(len(keep))])[0].astype(np.float32)  # (D,)

    # -- classify -----------------------------------------------------------------------------------
    def classify(self, labels, templates=None, level: str = "video", k: int | None = None, *,
                 where: dict | None = None, where_sql: str | None = None, batch_size: int = 4096):
        """Zero-shot classification (CLIP): see vidclip.classify.classify."""
        from vidclip.classify import classify

        return classify(self, labels, templates=templates, level=level, k=k, where=where, where_sql=where_sql, batch_size=batch_size)

    # -- status -------------------------------------------------------------------------------------
    def status(self) -> dict:
        quick_check(self.store)  # stale counts of a damaged store are refused, not shown
        meta = self.store.meta
        source = meta.get("model_source") or {}
        return {
            "videos": {"ok": self.store.count("videos", "status = 'ok'"), "failed": self.store.count("videos", "status = 'failed'")},
            "frames": self.store.count("frames"),
            "clips": self.store.count(self.store.segments["clip"]),
            "model": {"name": source.get("name"), "pretrained": source.get("pretrained")},
            "sampling": meta.get("sampling"),
            "temporal": meta.get("temporal"),
            "index": self._index_status(),
        }

    def _index_status(self) -> list[dict]:
        """Per vector table: exact or ANN, and whether `vidclip index` should be run again."""
        if not self.store.has_vectors:
            return []
        from vidclip.index import index_status

        return [
            {"table": t.table, "mode": t.mode, "rows": t.rows, "needs_reindex": t.needs_reindex}
            for t in index_status(self.store).tables
        ]

    def failures(self) -> list[dict]:
        return self.store.failures()


def _merge_metadata(entries: list, path: str) -> list:
    """Entries with the sidecar manifest's metadata (keyed by absolute uri) merged into theirs."""
    import dataclasses
    import json

    from vidclip.manifest import read_manifest

    sidecar = {os.path.abspath(uri): meta for uri, meta in read_manifest(path)}
    out = []
    for entry in entries:
        extra = sidecar.get(entry.uri)
        if extra:
            merged = dict(json.loads(entry.metadata) if entry.metadata else {}, **json.loads(extra))
            entry = dataclasses.replace(entry, metadata=json.dumps(merged, sort_keys=True, default=str))
        out.append(entry)
    return out


def _load_image(image):
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
