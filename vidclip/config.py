"""Small frozen configuration objects, built once at the edge (CLI or API).

Each function receives only the part it needs.  What a store was built with
(model, sampling, temporal module) is recorded in the store and checked on
every later open.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vidclip.objectstore import ObjectStorage

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
SAMPLING_MODES = ("fps", "uniform", "keyframes")
CLIP_MODES = ("fixed", "shots")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class ModelConfig:
    """Which open_clip model to build and where its weights come from.

    pretrained: an open_clip tag (downloaded on first use), a path to a local
    checkpoint file (.safetensors / .pt / .bin), or "none" for seeded random weights.
    config_path: optional open_clip model-config JSON that registers a custom
    architecture under `name` (vidclip.model.encoder._register_config: it may carry a
    "preprocess_cfg", and its Hugging Face folders may be relative to it).
    precision: the image tower's arithmetic.  "auto": bf16 where the device computes it natively
    (CUDA autocast, bf16 or else fp16; a CPU with AVX512-BF16 or AMX runs the image tower in bf16,
    about 5x faster than fp32 on one, vectors within cosine 0.9999 of fp32's), fp32 elsewhere;
    "fp32": full precision everywhere; "bf16": bf16 even where it is emulated (slow).
    """

    name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    config_path: str | None = None
    device: str = "auto"
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        from vidclip.errors import InputError

        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class SamplingConfig:
    """How frames are picked and how a video is cut into clips.

    mode "fps": frames at `fps` per second; a clip keeps at most `max_frames` of them
    (uniformly subsampled) as the temporal module's input.
    mode "uniform": exactly `max_frames` frames spread uniformly over each clip
    (CLIP4Clip's uniform-N), fewer only if the clip holds fewer decoded frames.
    mode "keyframes": like "fps", but each target takes the last *keyframe* at or before it, and
    only keyframes are decoded (the decoder skips every other frame): several times cheaper to
    decode, for very large libraries, at the cost of coarser, keyframe-aligned times (a 10 s
    keyframe interval gives one frame per 10 s).  A frame belongs to the clip holding its own time.
    """

    mode: str = "fps"
    fps: float = 1.0
    clip_seconds: float = 10.0
    max_frames: int = 12
    # "fixed": windows of clip_seconds; "shots": one clip per shot (vidclip.ingest.shots), a shot
    # longer than clip_seconds split into equal parts, one shorter than MIN_SHOT_S merged
    clips: str = "fixed"

    def __post_init__(self) -> None:
        from vidclip.errors import InputError

        if self.mode not in SAMPLING_MODES:
            raise InputError(f"sampling mode must be one of {', '.join(SAMPLING_MODES)}, got {self.mode!r}")
        if not self.fps > 0:
            raise InputError(f"--fps must be > 0, got {self.fps}")
        if not self.clip_seconds > 0:
            raise InputError(f"--clip-seconds must be > 0, got {self.clip_seconds}")
        if self.max_frames < 1:
            raise InputError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.clips not in CLIP_MODES:
            raise InputError(f"--clips must be one of {', '.join(CLIP_MODES)}, got {self.clips!r}")

    def to_dict(self) -> dict:
        """What a store records; `clips` only when not "fixed", so stores written before it existed
        keep matching."""
        d = asdict(self)
        if d["clips"] == "fixed":
            del d["clips"]
        return d


@dataclass(frozen=True)
class DecodeConfig:
    """How one video is decoded, and the limits applied.

    isolate: decode in a child process that is killed when it goes `timeout_s` seconds without
    delivering anything (a hung or crashed native decoder costs one recorded failure).
    job: the decode entry point run for each video ("module:function"); replace it to plug in
    another decoder.
    """

    max_pixels: int = 7680 * 4320  # refuse declared resolutions over 8K before decoding
    chunk_frames: int = 32  # frames held at once per video while decoding (and at most decoder.CHUNK_BYTES)
    # Frames are resized for the model so their short side fits it; a 16384x16 stripe would become
    # 229376x224 (147 MB per frame).  Refuse aspect ratios past this before decoding.
    max_aspect: float = 16.0
    timeout_s: float = 120.0
    isolate: bool = True
    job: str = "vidclip.ingest.video:decode_job"
    storage: ObjectStorage = field(default_factory=ObjectStorage)  # how to read s3:// / gs:// / az:// inputs

    def __post_init__(self) -> None:
        from vidclip.errors import InputError

        if not self.timeout_s > 0:
            raise InputError(f"--decode-timeout must be > 0, got {self.timeout_s}")
        if self.max_pixels < 1 or self.chunk_frames < 1:
            raise InputError("max_pixels and chunk_frames must be >= 1")
        if not self.max_aspect >= 1:
            raise InputError(f"max_aspect must be >= 1, got {self.max_aspect}")
