"""The Python API: a video library backed by one store.

    lib = vidclip.open("videos.lancedb")                 # existing store: its own model and settings
    lib = vidclip.open("new.lancedb", model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    report = lib.ingest(["/data/videos"])
    hits = lib.search("a dog catches a frisbee", k=10)
    hits = lib.search(image="frame.jpg", per_video=3)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from vidclip.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, DecodeConfig, ModelConfig, SamplingConfig
from vidclip.errors import QueryError, StoreMismatchError, WeightsUnavailableError
from vidclip.objectstore import ObjectStorage
from vidclip.ingest.video import IngestReport
from vidclip.query import embedding
from vidclip.query.hybrid import check_fusion, search_hybrid
from vidclip.query.rerank import DEFAULT_ALPHA, DEFAULT_RERANK_K, check_rerank
from vidclip.query.search import Hits, check_ann, check_request, search_vector, stored_vector
from vidclip.store.integrity import quick_check

if TYPE_CHECKING:
    from pipelines.options import JobOptions
    from vidclip.ingest.committer import CommitPolicy
from vidclip.store.store import Store, describe_mismatch
from vidclip.ingest.watchdog import DEFAULT_STALL_S

log = logging.getLogger("vidclip")

DEFAULT_TEMPORAL = "mean"


def open(
    db: str | os.PathLike,
    model: str | ModelConfig | None = None,
    pretrained: str | None = None,
    *,
    model_config: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    create: bool = True,
    storage_options: dict | None = None,
    exact_memory_mb: float | None = None,
) -> "Library":
    """Open (or create) a library.  For an existing store, `model`/`pretrained` may be left out:
    the store's own are used, and any that are given must match them.

    exact_memory_mb: RAM for the in-memory exact search over a table without an ANN index, and
    for the in-memory video_id -> uri directory, each (vidclip/store/exact.py; default 1024 MB, about
    520k 512-d clips); 0 leaves both to LanceDB."""
    store = Store.open(str(db), create=create, storage_options=storage_options)
    if exact_memory_mb is not None:
        if isinstance(exact_memory_mb, bool) or not isinstance(exact_memory_mb, (int, float)) or not exact_memory_mb >= 0:
            raise QueryError(f"exact_memory_mb must be >= 0, got {exact_memory_mb!r}")
        store.exact.max_bytes = store.directory.max_bytes = int(exact_memory_mb * 2**20)
    if isinstance(model, ModelConfig):
        requested = model
    else:
        requested = _model_from(store, model, pretrained, model_config, device, precision)
    return Library(store, requested)


def _model_from(store: Store, name, pretrained, config_path, device, precision="auto") -> ModelConfig:
    recorded = store.meta.get("model_source")
    if recorded is None:
        cfg = ModelConfig(
            name=name or DEFAULT_MODEL,
            pretrained=pretrained or DEFAULT_PRETRAINED,
            config_path=os.path.abspath(config_path) if config_path else None,
            device=device,
            precision=precision,
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
        precision=precision,
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
            from vidclip.model.encoder import Encoder

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
        on_listed: "Callable[[int], None] | None" = None,
    ) -> IngestReport:
        """Ingest files and folders (recursively).  Files already in the store are skipped; files
        that cannot be decoded are recorded as failed with their reason, never fatal.

        ray: False runs the in-process loop; True or a `pipelines.options.JobOptions` runs the
        Ray Data job (a local Ray is started on demand unless the options name an address).
        decode_workers: videos decoded at once by the in-process loop, each in its own sandbox
        child (on Ray, JobOptions.decode_workers).

        metadata: a sidecar manifest (CSV / JSONL / Parquet with a `uri` column) whose other
        columns become each matching file's metadata (merged over a manifest input's own);
        title / description / tags become filterable, full-text searchable columns.

        on_listed: called once with the number of inputs when they have been listed (a bad path is
        refused before it), before the model loads (the CLI says there which runner it chose)."""
        from vidclip.ingest.committer import CommitPolicy
        from vidclip.ingest.manifest import list_inputs, merge_sidecar

        commit = commit or CommitPolicy()
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not decode.storage.options and self.store.storage_options:
            # Inputs on object storage are read with the store's own options unless told otherwise.
            decode = dataclasses.replace(decode, storage=ObjectStorage.of(self.store.storage_options))
        # Listed before anything is written: a bad path or an unreadable bucket leaves no store behind.
        entries = list(list_inputs([str(p) for p in paths], storage=decode.storage))
        if metadata is not None:
            entries = merge_sidecar(entries, str(metadata), decode.storage)
        if on_listed is not None:
            on_listed(len(entries))
        sampling = self._sampling(sampling)
        spec = self.store.meta.get("temporal") or {"name": DEFAULT_TEMPORAL}
        settings = {"sampling": sampling.to_dict(), "temporal": spec}
        self.store.check_settings(settings, record=False)  # cheap checks before the model loads
        quick_check(self.store)  # never ingest "around" lost rows (their videos would be skipped as ok)
        # The writer lease before the model: a second writer is refused at once, and the model's
        # own record in the store (encoder -> _check_model) is written under the lease too.
        created_here = self.store.pending
        try:
            with self.store.writing("ingest"):
                encoder = self.encoder
                if batch_size is not None:
                    encoder.batch_size = int(batch_size)
                spec, aggregator = self._temporal()
                self.store.check_settings(settings)
                return self._run_ingest(entries, encoder, spec, aggregator, sampling, decode, ray, retry_failed, commit, progress, stall_s, decode_workers)
        except BaseException:
            # A store this call created and that never received a commit (the model's weights
            # could not be fetched, the cluster refused the driver) is removed: nothing is left
            # behind by a command that stored nothing.
            if created_here:
                self.store.discard_if_unused()
            raise

    def _run_ingest(self, entries, encoder, spec, aggregator, sampling, decode, ray, retry_failed, commit, progress, stall_s, decode_workers) -> IngestReport:
        if ray:
            from pipelines.ingest_job import run_on_ray
            from pipelines.options import JobOptions
            from vidclip.model.geometry import FrameGeometry

            options = ray if isinstance(ray, JobOptions) else JobOptions(batch_size=encoder.batch_size)
            return run_on_ray(
                self.store, entries, self.model_config, encoder.dim, FrameGeometry.of_model(encoder.model),
                aggregator, spec["name"], sampling, decode, options,
                retry_failed=retry_failed, commit=commit, progress=progress, total=len(entries), stall_s=stall_s,
            )
        from vidclip.ingest.runner import run_in_process

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
        vector=None,
        moment: str = "refined",
    ) -> Hits:
        """Top-k hits for a query:

        text / image (a path, a PIL image or an (H, W, 3) uint8 array) / video (a file, optionally
        with span=(start_s, end_s)); text and image together are combined with `weights`
        (default (0.5, 0.5)): the weighted sum of their normalised embeddings, renormalised.

        where: structured filter over videos (vidclip.store.filters: validated, typed, quoted).
        where_sql: RAW SQL over the videos table, ANDed with `where`: TRUSTED INPUT ONLY.
        rerank: None (first stage only, default) | "max" | "mean" | "fusion" (vidclip.query.rerank), over
        the top `rerank_k` first-stage candidates; alpha weighs the clip score in "fusion".
        hybrid: fuse the vector ranking with BM25 full-text search over title/description/tags
        (needs `text`): fusion="rrf" (score = sum of 1/(rrf_k + rank), default) or "weighted"
        (text_weight * min-max-normalised BM25 + (1 - text_weight) * normalised cosine).
        nprobes / refine_factor: ANN settings, passed only when given.
        vector: a ready (D,) query vector in the store's space (e.g. `stored_vector(...)` for "more
        like this moment", or one a server embedded in a batch); an image or video cannot be given
        with it, and a text is then used only by `hybrid`'s full-text half."""
        from vidclip.store.filters import combine_where

        check_request(k, per_video, level)
        if moment not in ("refined", "clip"):
            raise QueryError(f"moment must be 'refined' or 'clip', got {moment!r}")
        check_rerank(rerank, rerank_k, alpha)
        check_ann(nprobes, refine_factor)
        check_fusion(fusion, rrf_k, text_weight)
        if hybrid and (text is None or not str(text).strip()):
            raise QueryError("hybrid search needs a text query")
        quick_check(self.store)  # a damaged store is one line, never silently missing hits
        sql = combine_where(self.store, where, where_sql)
        if vector is not None:
            if image is not None or video is not None:
                raise QueryError("a query vector cannot be combined with an image or a video")
            query = self._check_vector(vector)
        else:
            query = self.embed_query(text=text, image=image, video=video, span=span, weights=weights)
        options = dict(where=sql, rerank=rerank, rerank_k=rerank_k, alpha=alpha, nprobes=nprobes, refine_factor=refine_factor,
                       moments=moment == "refined")
        if not hybrid:
            return search_vector(self.store, query, k=k, per_video=per_video, level=level, **options)
        return search_hybrid(self.store, str(text).strip(), query, k, per_video, level, options,
                             fusion, rrf_k, text_weight)

    def stored_vector(self, video_id: str, clip_id: int | None = None) -> np.ndarray:
        """The stored (D,) vector of clip `clip_id` of an ok video, or of the whole video when None:
        the query for "more like this moment" (no model needed)."""
        return stored_vector(self.store, video_id, clip_id)

    def _check_vector(self, vector) -> np.ndarray:
        arr = np.asarray(vector, dtype=np.float32)  # (D,)
        dim = (self.store.meta.get("model") or {}).get("dim")
        if arr.ndim != 1 or (dim is not None and arr.shape[0] != int(dim)) or not np.isfinite(arr).all():
            raise QueryError(f"a query vector must be {dim or 'D'} finite numbers, got shape {arr.shape}")
        norm = float(np.linalg.norm(arr))
        if norm < 1e-8:
            raise QueryError("a query vector must not be zero")
        return arr / norm

    def embed_query(self, text: str | None = None, image=None, video=None, span=None, weights=None) -> np.ndarray:
        """The normalised query vector (D,) for a text, an image, a video (span), or text + image."""
        embedding.check_query(text, image, video, span)
        if self.store.meta.get("model") is None:
            raise QueryError(f"{self.uri}: the store is empty; ingest videos first")
        if video is not None:
            return self.embed_video(video, span)
        return embedding.embed_text_image(self.encoder, text, image, weights)

    def embed_video(self, path, span: tuple[float, float] | None = None) -> np.ndarray:
        """A video file (or a span of it) embedded as the store embeds a clip (vidclip.query.embedding)."""
        path, span = embedding.check_video(path, span)  # before the model loads
        return embedding.embed_video(path, span, self.encoder, self._temporal()[1], self._sampling(None))

    # -- classify -----------------------------------------------------------------------------------
    def classify(self, labels, templates=None, level: str = "video", k: int | None = None, *,
                 where: dict | None = None, where_sql: str | None = None, batch_size: int = 4096):
        """Zero-shot classification (CLIP): see vidclip.query.classify.classify."""
        from vidclip.query.classify import classify

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
            "failures": self.store.failure_reasons(),  # failed videos per reason, most common first
            "model": {"name": source.get("name"), "pretrained": source.get("pretrained")},
            "sampling": meta.get("sampling"),
            "temporal": meta.get("temporal"),
            "index": self._index_status(),
        }

    def build_index(self, *, threshold: int | None = None, force: bool = False, index_type: str | None = None,
                    calibration: str = "auto"):
        """`vidclip index`: build ANN indexes on the clip and whole-video tables above `threshold`
        rows (exact search below it) and record the calibrated query settings in the store.

        calibration: which queries recall is measured on. "text": vidclip.store.calibration.PROMPTS
        through this store's text tower (what users type; the default whenever the store records a
        model), "stored": perturbed stored vectors (no model needed, but in distribution, so text
        queries get less recall than the report says), "auto": text when the store records a model."""
        from vidclip.store import index as vindex
        from vidclip.store.calibration import text_queries

        if calibration not in ("auto", "text", "stored"):
            raise QueryError(f"calibration must be auto, text or stored, got {calibration!r}")
        if calibration == "auto":
            calibration = "text" if self.store.meta.get("model_source") else "stored"
        queries = None
        if calibration == "text":
            if not self.store.meta.get("model_source"):
                raise QueryError(f"{self.uri}: no model recorded in the store to encode calibration prompts with; "
                                 "use calibration 'stored'")

            def queries():  # called only if a table is large enough to index
                try:
                    return text_queries(self.encoder.encode_text)
                except WeightsUnavailableError as exc:
                    raise WeightsUnavailableError(f"{exc} (or calibrate without the model: --calibration stored)") from None
        return vindex.build_index(self.store, threshold=vindex.EXACT_THRESHOLD if threshold is None else threshold,
                                  force=force, index_type=index_type or vindex.DEFAULT_INDEX_TYPE, calibration=queries)

    def _index_status(self) -> list[dict]:
        """Per vector table: exact or ANN, and whether `vidclip index` should be run again."""
        if not self.store.has_vectors:
            return []
        from vidclip.store.index import index_status

        return [
            {"table": t.table, "mode": t.mode, "rows": t.rows, "needs_reindex": t.needs_reindex}
            for t in index_status(self.store).tables
        ]

    def failures(self) -> list[dict]:
        return self.store.failures()

