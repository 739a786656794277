"""Zero-shot classification, as in CLIP.

Text side: prompt-template ensembling (CLIP's notebook): for each label, embed every template
filled with it, L2-normalise, average, renormalise -> (L, D).  Item side: the stored whole-video
vectors (level="video") or clip vectors (level="clip").  Scoring follows the model's training
objective (`Scoring.of`):
  - "softmax" (CLIP's contrastive loss): logits = logit_scale * cos (the model's learned scale,
    at most 100, else 100), softmax over the labels: the probabilities of an item sum to 1;
  - "sigmoid" (SigLIP's loss; an open_clip model with a `logit_bias`): p = sigmoid(scale * cos + bias)
    with the model's own exp(logit_scale) and logit_bias, each label independently (an item may fit
    several labels, or none).
The model is the store's (its weights are checked against the store's record), so the scale and
bias are those of the model that built the store.  Rankings by cosine are unchanged by either.

The segment table is streamed in batches of `batch_size` rows, so a big store is never loaded at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vidclip.errors import QueryError

DEFAULT_TEMPLATES = (
    "a video of {}.",
    "a clip of {}.",
    "a video showing {}.",
    "footage of {}.",
    "a short video of {}.",
    "a photo of {}.",
    "a frame from a video of {}.",
)
MAX_LABELS = 1000
MAX_LABEL_CHARS = 200


SCORINGS = ("softmax", "sigmoid")


@dataclass(frozen=True)
class Scoring:
    """How cosines become label probabilities: kind "softmax" or "sigmoid", with the model's scale
    (and bias, sigmoid only)."""

    kind: str
    scale: float
    bias: float = 0.0

    @classmethod
    def of(cls, encoder) -> "Scoring":
        """Sigmoid for a model with a logit bias (SigLIP-style), else CLIP's softmax."""
        model = encoder.model
        bias = getattr(model, "logit_bias", None)
        if bias is None:
            return cls("softmax", logit_scale(encoder))
        scale = float(np.exp(float(model.logit_scale.detach().float().reshape(-1)[0].cpu())))
        return cls("sigmoid", scale, float(bias.detach().float().reshape(-1)[0].cpu()))

    def probabilities(self, cos: np.ndarray) -> np.ndarray:
        """(B, L) cosines -> (B, L) probabilities."""
        logits = self.scale * cos.astype(np.float64)  # (B, L)
        if self.kind == "sigmoid":
            return 0.5 * (1.0 + np.tanh(0.5 * (logits + self.bias)))  # sigmoid, overflow-free
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)


@dataclass
class Classification:
    """Per-item label probabilities.  `table` rows: video_id, uri, [clip_id, start_s, end_s],
    label (the most probable), prob, then one column per label ("p:<label>").  `scoring`:
    "softmax" (an item's probabilities sum to 1) or "sigmoid" (each label on its own)."""

    labels: list[str]
    level: str
    table: pa.Table
    scoring: str = "softmax"

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self):
        return self.table.to_pandas()

    def to_dicts(self) -> list[dict]:
        return self.table.to_pylist()

    def __len__(self) -> int:
        return self.table.num_rows


def label_vectors(encoder, labels: list[str], templates: list[str]) -> np.ndarray:
    """(L, D): per label, the renormalised mean of its normalised template embeddings."""
    texts = [t.format(label) for label in labels for t in templates]
    z = encoder.encode_text(texts).numpy().reshape(len(labels), len(templates), -1)  # (L, P, D), each normalised
    mean = z.mean(axis=1)  # (L, D)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def logit_scale(encoder) -> float:
    """CLIP's softmax temperature: the model's exp(logit_scale), at most 100 (CLIP's clamp), else 100."""
    scale = getattr(encoder.model, "logit_scale", None)
    if scale is None:
        return 100.0
    return float(min(100.0, np.exp(float(scale.detach().float().reshape(-1)[0].cpu()))))


def check_labels(labels, templates) -> tuple[list[str], list[str]]:
    if isinstance(labels, str):
        labels = [labels]
    labels = [str(x).strip()[:MAX_LABEL_CHARS] for x in (labels or [])]
    if len(labels) < 2 or any(not x for x in labels):
        raise QueryError("classify needs at least two non-empty labels")
    if len(labels) > MAX_LABELS:
        raise QueryError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    if len(set(labels)) != len(labels):
        raise QueryError("labels must be distinct")
    if isinstance(templates, str):
        raise QueryError("templates must be a non-empty list of strings with one '{}'")
    templates = list(DEFAULT_TEMPLATES if templates is None else templates)
    if not templates:
        raise QueryError("templates must be a non-empty list of strings with one '{}'")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise QueryError(f"template {t!r} must contain exactly one '{{}}' and no other braces")
    return labels, templates


def classify(lib, labels, templates=None, level: str = "video", k: int | None = None, *,
             where: dict | None = None, where_sql: str | None = None, batch_size: int = 4096) -> Classification:
    """Probabilities of `labels` for every video (level="video") or clip (level="clip").
    k: None returns every item (store order); an int returns the k most confident items."""
    from vidclip.store.filters import combine_where
    from vidclip.query.search import LEVELS, MAX_K
    from vidclip.store.schema import OK, vectors_of

    if level not in LEVELS:
        raise QueryError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K):
        raise QueryError(f"k must be None or an integer between 1 and {MAX_K}, got {k!r}")
    labels, templates = check_labels(labels, templates)
    store = lib.store
    if store.meta.get("model") is None or not store.has_vectors:
        raise QueryError(f"{lib.uri}: the store is empty; ingest videos first")
    text = label_vectors(lib.encoder, labels, templates)  # (L, D)
    scoring = Scoring.of(lib.encoder)
    sql = combine_where(store, where, where_sql)
    clip_level = level == "clip"
    parts = []
    reader = store.table(store.segments[level]).search().select(["video_id", "clip_id", "start_s", "end_s", "vector"]).limit(None)
    for batch in reader.to_batches(batch_size):
        if batch.num_rows == 0:
            continue
        ids = batch.column("video_id").to_pylist()
        videos = store.videos_by_id(ids, status=OK, where=sql)  # committed and allowed
        keep = np.asarray([v in videos for v in ids])
        if not keep.any():
            continue
        batch = pa.Table.from_batches([batch]).filter(pa.array(keep))
        vecs = vectors_of(batch.column("vector"))  # (B, D)
        probs = scoring.probabilities(vecs @ text.T)  # (B, L)
        best = probs.argmax(axis=1)  # (B,)
        cols = {
            "video_id": batch.column("video_id"),
            "uri": pa.array([videos[v]["uri"] for v in batch.column("video_id").to_pylist()]),
        }
        if clip_level:
            cols.update(clip_id=batch.column("clip_id"), start_s=batch.column("start_s"), end_s=batch.column("end_s"))
        cols["label"] = pa.array([labels[i] for i in best])
        cols["prob"] = pa.array(probs[np.arange(len(best)), best].astype(np.float64))
        for j, label in enumerate(labels):
            cols[f"p:{label}"] = pa.array(probs[:, j].astype(np.float64))
        part = pa.table(cols)
        if k is not None:  # keep only the running top k, so memory stays O(k + batch)
            parts = [_top(pa.concat_tables([*parts, part]), k)]
        else:
            parts.append(part)
    if not parts:
        names = ["video_id", "uri", *(["clip_id", "start_s", "end_s"] if clip_level else []), "label", "prob"]
        empty = {n: pa.array([], pa.string() if n in ("video_id", "uri", "label") else pa.float64()) for n in names}
        empty.update({f"p:{label}": pa.array([], pa.float64()) for label in labels})
        return Classification(labels, level, pa.table(empty), scoring.kind)
    table = pa.concat_tables(parts)
    if k is not None:
        table = _top(table, k)
    return Classification(labels, level, table, scoring.kind)


def _top(table: pa.Table, k: int) -> pa.Table:
    import pyarrow.compute as pc

    order = pc.sort_indices(table, sort_keys=[("prob", "descending")])
    return table.take(order[:k])
