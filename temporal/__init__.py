"""Temporal aggregation: frame vectors (B,T,D) -> clip vectors (B,D). Pure torch.

    import temporal
    agg = temporal.build("seq_transformer", 512)
    temporal.init_from_clip(agg, clip_model)
    clip_vecs = agg(frames, mask)            # (B, T, D), (B, T) bool -> (B, D), L2-normalised
    temporal.save(agg, "ckpt/", clip_model="ViT-B-32/openai")
"""

# importing the aggregator modules registers them
from temporal import mean, seq_lstm, seq_transformer  # noqa: F401
from temporal.checkpoint import fingerprint, load, read_config, save
from temporal.clip_init import init_from_clip
from temporal.loss import info_nce
from temporal.mean import MeanPool
from temporal.registry import TemporalError, build, names, wants_raw_frames
from temporal.seq_lstm import SeqLSTM
from temporal.seq_transformer import SeqTransformer

__all__ = [
    "MeanPool",
    "SeqLSTM",
    "SeqTransformer",
    "TemporalError",
    "build",
    "fingerprint",
    "info_nce",
    "init_from_clip",
    "load",
    "names",
    "read_config",
    "save",
    "wants_raw_frames",
]
