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
from typing import Iterable

import numpy as np

from vidclip.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, DecodeConfig, ModelConfig, SamplingConfig
from vidclip.errors import InputError, QueryError, StoreMismatchError
from vidclip.ingest import IngestReport
from vidclip.search import Hits, check_request, search_vector
from vidclip.store import Store, describe_mismatch

log = logging.getLogger("vidclip")

MAX_QUERY_CHARS = 1000
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
) -> "Library":
    """Open (or create) a library.  For an existing store, `model`/`pretrained` may be left out:
    the store's own are used, and any that are given must match them."""
    store = Store.open(str(db), create=create, storage_options=storage_options)
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
    ) -> IngestReport:
        """Ingest files and folders (recursively).  Files already in the store are skipped; files
        that cannot be decoded are recorded as failed with their reason, never fatal.

        ray: False runs the in-process loop; True or a `pipelines.options.JobOptions` runs the
        Ray Data job (a local Ray is started on demand unless the options name an address)."""
        from vidclip.committer import CommitPolicy
        from vidclip.manifest import list_inputs
        from vidclip.runner import run_in_process

        commit = commit or CommitPolicy()
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        entries = list(list_inputs([str(p) for p in paths]))
        sampling = self._sampling(sampling)
        spec = self.store.meta.get("temporal") or {"name": DEFAULT_TEMPORAL}
        settings = {"sampling": sampling.to_dict(), "temporal": spec}
        self.store.check_settings(settings, record=False)  # cheap checks before the model loads
        encoder = self.encoder
        if batch_size is not None:
            encoder.batch_size = int(batch_size)
        spec, aggregator = self._temporal()
        self.store.check_settings(settings)
        if ray:
            from pipelines.ingest_job import run_on_ray
            from pipelines.options import JobOptions
            from vidclip.geometry import FrameGeometry

            options = ray if isinstance(ray, JobOptions) else JobOptions(batch_size=encoder.batch_size)
            return run_on_ray(
                self.store, entries, self.model_config, encoder.dim, FrameGeometry.of_model(encoder.model),
                aggregator, spec["name"], sampling, decode, options,
                retry_failed=retry_failed, commit=commit, progress=progress, total=len(entries),
            )
        return run_in_process(
            self.store, entries, encoder, aggregator, spec["name"], sampling, decode,
            retry_failed=retry_failed, commit=commit, progress=progress, total=len(entries),
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
        k: int = 10,
        per_video: int = 1,
        level: str = "clip",
    ) -> Hits:
        """Top-k hits for a text or an image (a path, a PIL image or an (H, W, 3) uint8 array)."""
        check_request(k, per_video, level)
        query = self.embed_query(text=text, image=image)
        return search_vector(self.store, query, k=k, per_video=per_video, level=level)

    def embed_query(self, text: str | None = None, image=None) -> np.ndarray:
        if (text is None or not str(text).strip()) and image is None:
            raise QueryError("empty query: give a text, an image, or both")
        if text is not None and image is not None:
            raise QueryError("give either a text or an image query, not both")
        if self.store.meta.get("model") is None:
            raise QueryError(f"{self.uri}: the store is empty; ingest videos first")
        if image is not None:
            vec = self.encoder.encode_images([_load_image(image)])[0]
        else:
            text = str(text).strip()[:MAX_QUERY_CHARS]
            vec = self.encoder.encode_text([text])[0]
        return vec.numpy().astype(np.float32)  # (D,)

    # -- status -------------------------------------------------------------------------------------
    def status(self) -> dict:
        meta = self.store.meta
        source = meta.get("model_source") or {}
        return {
            "videos": {"ok": self.store.count("videos", "status = 'ok'"), "failed": self.store.count("videos", "status = 'failed'")},
            "frames": self.store.count("frames"),
            "clips": self.store.count(self.store.segments["clip"]),
            "model": {"name": source.get("name"), "pretrained": source.get("pretrained")},
            "sampling": meta.get("sampling"),
            "temporal": meta.get("temporal"),
        }

    def failures(self) -> list[dict]:
        return self.store.failures()


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
