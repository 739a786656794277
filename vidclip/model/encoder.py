"""The CLIP encoder: open_clip's model, with its eval preprocessing run on batched tensors.

Frames arrive as uint8 RGB arrays (H, W, 3).  They are stacked per size, moved to the
model's device, and pushed through the *same* Resize / CenterCrop / Normalize objects
that open_clip's own eval `preprocess` holds (PIL-only steps dropped), so on a GPU the
whole path from uint8 to embedding runs there.  `decode_size` tells a decoder what to
resize frames to so that the remaining tensor work is (nearly) a pure crop.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from vidclip.model import weights
from vidclip.config import ModelConfig
from vidclip.model.geometry import oversampled
from vidclip.errors import InputError, ModelError

log = logging.getLogger("vidclip")

DEFAULT_BATCH_SIZE = 64
# Upper bound on float32 pixel values held at once while preprocessing one group of frames
# (64M values = 256 MB); bounds memory for 4K input without changing the forward batch.
_PREPROCESS_BUDGET = 64 * 1024 * 1024
# Batches whose vectors wait on the device before one copy back (bounds device memory: 8 x 512 x D floats).
_PENDING_BATCHES = 8


@dataclass(frozen=True)
class ModelIdentity:
    """What a store records about the model that built it.

    weights_sha256 is the sha256 of the checkpoint file, or for pretrained="none" a
    fingerprint of the seeded random parameters.  `pretrained` is the tag, "none", or
    the checkpoint path as given (machine-specific, hence not part of `matches`).
    """

    name: str
    pretrained: str
    weights_sha256: str
    dim: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelIdentity":
        return cls(name=str(d["name"]), pretrained=str(d["pretrained"]),
                   weights_sha256=str(d["weights_sha256"]), dim=int(d["dim"]))

    def matches(self, other: "ModelIdentity") -> bool:
        """Same architecture, same weights, same dimension (the checkpoint path may differ)."""
        return (self.name, self.weights_sha256, self.dim) == (other.name, other.weights_sha256, other.dim)


# ----------------------------------------------------------------------------- preprocessing


class _ShapeOnly:
    """Stands in for a PIL image where open_clip only reads `.size` (width, height)."""

    def __init__(self, width: int, height: int):
        self.size = (width, height)


def _resized_hw(h: int, w: int, size, max_size=None) -> tuple[int, int]:
    """torchvision Resize's output (h, w) for an input (h, w)."""
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    s = int(size[0] if isinstance(size, (list, tuple)) else size)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = s, int(s * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if w <= h else (new_short, new_long)


class TensorPreprocess:
    """open_clip's eval transform, applied to batched (B, 3, H, W) uint8 tensors on any device.

    Built by walking the torchvision Compose returned by `image_transform_v2(cfg, is_train=False)`
    and reusing its Resize / CenterCrop / CenterCropOrPad / Normalize objects; open_clip's
    ResizeKeepRatio (PIL-only `get_params`) is run through its own size formula.
    `supported` is False when a step has no tensor equivalent (the caller then uses PIL).
    """

    def __init__(self, pil_transform):
        from open_clip.transform import CenterCropOrPad, MaybeConvertMode, MaybeToTensor, ResizeKeepRatio
        from torchvision.transforms import CenterCrop, Normalize, Resize, ToTensor

        self.steps: list[tuple[str, object]] = []
        self.unsupported: list[str] = []
        for t in getattr(pil_transform, "transforms", [pil_transform]):
            if isinstance(t, Resize):
                self.steps.append(("resize", t))
            elif isinstance(t, ResizeKeepRatio):
                self.steps.append(("resize_keep_ratio", t))
            elif isinstance(t, (CenterCrop, CenterCropOrPad)):
                self.steps.append(("crop", t))
            elif isinstance(t, (MaybeToTensor, ToTensor)):
                self.steps.append(("to_unit", t))
            elif isinstance(t, Normalize):
                self.steps.append(("normalize", t))
            elif isinstance(t, MaybeConvertMode) or getattr(t, "__name__", "") == "_convert_to_rgb":
                continue  # frames are RGB already
            else:
                self.unsupported.append(repr(t))

    @property
    def supported(self) -> bool:
        return not self.unsupported

    def pil_resample(self):
        """PIL's filter for the first resize step (the one open_clip's PIL transform runs), or None
        when there is no resize or its interpolation has no PIL twin here."""
        from PIL import Image
        from torchvision.transforms import InterpolationMode

        for kind, t in self.steps:
            if kind in ("resize", "resize_keep_ratio"):
                return {InterpolationMode.BICUBIC: Image.BICUBIC,
                        InterpolationMode.BILINEAR: Image.BILINEAR}.get(t.interpolation)
        return None

    def resize_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output (h, w) of the first resize step for an (h, w) input (unchanged if there is none)."""
        for kind, t in self.steps:
            if kind == "resize":
                return _resized_hw(h, w, t.size, t.max_size)
            if kind == "resize_keep_ratio":
                oh, ow = t.get_params(_ShapeOnly(w, h), t.size, t.longest)
                return int(oh), int(ow)
        return h, w

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, 3, h, w) float32 normalised, on x's device."""
        x = x.float()  # (B, 3, H, W) in [0, 255]
        scaled = False
        for kind, t in self.steps:
            if kind in ("resize", "resize_keep_ratio"):
                oh, ow = self.resize_hw(x.shape[-2], x.shape[-1])
                if (oh, ow) != tuple(x.shape[-2:]):
                    x = TF.resize(x, [oh, ow], interpolation=t.interpolation, antialias=True)
                    # PIL resizes uint8 images: clamp and round like it does
                    x = x.clamp_(0, 255).round_()
            elif kind == "crop":
                x = t(x)
            elif kind == "to_unit":
                x = x / 255.0
                scaled = True
            elif kind == "normalize":
                if not scaled:
                    x, scaled = x / 255.0, True
                x = t(x)
        return x if scaled else x / 255.0


# ----------------------------------------------------------------------------- encoder


def _with_bf16_visual(model: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of `model` whose image tower is a bf16 copy; every other submodule and
    parameter is shared with `model` (unchanged)."""
    import copy

    image_model = copy.copy(model)
    image_model._modules = dict(model._modules)  # its own submodule table: `model` keeps its visual
    # The copy's floating tensors are made in bf16 straight away (through deepcopy's memo), not
    # copied in fp32 first and converted: ViT-B-32 0.72 -> 0.32 CPU-s.
    memo: dict = {}
    for t in [*model.visual.parameters(), *model.visual.buffers()]:
        if t.is_floating_point():
            half = t.detach().to(torch.bfloat16)
            memo[id(t)] = torch.nn.Parameter(half, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else half
    image_model.visual = copy.deepcopy(model.visual, memo).to(torch.bfloat16).eval()
    return image_model


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles), so that the image tower
    runs faster in bf16 than in fp32 (ViT-B-32 on 2 Sapphire Rapids cores: 13.5 vs 57 CPU-ms per
    image, benchmarks/encode_precision.json); elsewhere bf16 is emulated and slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes
        return False


def _pick_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ModelError(f"bad device {spec!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {spec!r} requested but CUDA is not available")
    return device


# Preprocessing keys a model config JSON may set in its "preprocess_cfg" (open_clip's name for it in
# open_clip_config.json); the size always follows the image tower.
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_RESIZE_MODES = ("shortest", "longest", "squash")


def _register_config(cfg: ModelConfig) -> dict:
    """Register the model config JSON `cfg.config_path` (if any) with open_clip under `cfg.name`, and
    return its preprocessing overrides ({} when it has none).

    The JSON is open_clip's model config (embed_dim, vision_cfg, text_cfg), optionally with a
    "preprocess_cfg" beside them, or open_clip_config.json's layout ({"model_cfg": ..., "preprocess_cfg":
    ...}, as open_clip repositories on the Hugging Face hub ship it).  Relative Hugging Face folders in
    text_cfg are taken relative to the JSON's own folder.  The config is registered as a dict, read
    afresh on every load (open_clip's add_model_config would keep the path and pass any extra key
    to the model class)."""
    import open_clip

    from vidclip.model import hf

    if not cfg.config_path:
        return {}
    path = Path(cfg.config_path).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"model config file not found: {cfg.config_path}")
    if path.stem != cfg.name and path.name != "open_clip_config.json":
        raise ModelError(f"model config {path.name} registers {path.stem!r}, but the model name is {cfg.name!r}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model config {path.name} is not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"model config {path.name} is not a JSON object")
    model_cfg = dict(raw["model_cfg"]) if isinstance(raw.get("model_cfg"), dict) else dict(raw)
    preprocess = raw.get("preprocess_cfg") or {}
    model_cfg.pop("preprocess_cfg", None)
    if not all(isinstance(model_cfg.get(k), dict) for k in ("vision_cfg", "text_cfg")) or "embed_dim" not in model_cfg:
        raise ModelError(f"model config {path.name} was not accepted by open_clip (needs embed_dim, vision_cfg, text_cfg)")
    model_cfg["text_cfg"] = hf.resolve_paths(model_cfg["text_cfg"], str(path.parent))
    open_clip.factory._MODEL_CONFIGS[cfg.name] = model_cfg
    return _check_preprocess(path.name, preprocess)


def _check_preprocess(where: str, preprocess) -> dict:
    """The "preprocess_cfg" of a model config JSON, checked; one line on a wrong key or value."""
    if not isinstance(preprocess, dict):
        raise ModelError(f"model config {where}: preprocess_cfg must be an object")
    unknown = sorted(set(preprocess) - set(PREPROCESS_KEYS) - {"size"})
    if unknown:
        raise ModelError(f"model config {where}: unknown preprocess_cfg key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(PREPROCESS_KEYS)})")
    out = {k: v for k, v in preprocess.items() if k in PREPROCESS_KEYS}
    for key in ("mean", "std"):
        value = out.get(key)
        if value is not None:
            value = [value] * 3 if isinstance(value, (int, float)) else value
            if (not isinstance(value, list) or len(value) != 3 or not all(isinstance(x, (int, float)) for x in value)
                    or (key == "std" and not all(x > 0 for x in value))):
                raise ModelError(f"model config {where}: preprocess_cfg.{key} must be 3 numbers{' > 0' if key == 'std' else ''}, "
                                 f"got {out[key]!r}")
            out[key] = tuple(float(x) for x in value)
    if out.get("interpolation", "bicubic") not in _INTERPOLATIONS:
        raise ModelError(f"model config {where}: preprocess_cfg.interpolation must be one of {', '.join(_INTERPOLATIONS)}")
    if out.get("resize_mode", "shortest") not in _RESIZE_MODES:
        raise ModelError(f"model config {where}: preprocess_cfg.resize_mode must be one of {', '.join(_RESIZE_MODES)}")
    return out


@contextmanager
def _drop_root_log(prefix: str):
    """Silence one open_clip root-logger message that is wrong in our flow (weights are loaded after creation)."""
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _check_model_name(name: str) -> None:
    import open_clip

    if open_clip.get_model_config(name) is None:
        known = open_clip.list_models()
        raise ModelError(f"unknown model {name!r} ({len(known)} known to open_clip, e.g. {', '.join(known[:5])}; "
                         f"or pass a model config JSON)")


class _NoRandomInit(torch.overrides.TorchFunctionMode):
    """While a model is built for a checkpoint to overwrite, its random initialisers do nothing.

    Building ViT-B-32 spends about 0.7-2 CPU-s drawing random numbers (each Linear's own init, then
    open_clip's) that the checkpoint then replaces; every process that loads weights (an ingest, each
    Ray encoder actor, a search) paid that.  The in-place random fills torch.nn.init and open_clip
    call are skipped; everything else (shapes, non-persistent buffers such as the text attention
    mask, fills with constants) runs as usual, and `weights.load_weights` then overwrites every
    parameter and persistent buffer (it refuses a checkpoint that misses any).  A torch function
    mode is thread-local: a model built on another thread meanwhile is initialised as usual."""

    # The tensor methods (HF towers call `weight.data.normal_`), and torch.nn.init's initialisers by
    # name: in torch 2.14 uniform_/normal_/kaiming_uniform_ dispatch through this mode themselves,
    # with the tensor as a keyword, and the methods they call then run with the mode off.  Skipping
    # the whole initialiser also skips its other work (orthogonal_'s QR, trunc_normal_'s erfinv).
    SKIPPED = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.random_,
                         torch.Tensor.bernoulli_, torch.Tensor.exponential_, torch.Tensor.log_normal_,
                         torch.Tensor.cauchy_, torch.Tensor.geometric_,
                         torch.nn.init.uniform_, torch.nn.init.normal_, torch.nn.init.trunc_normal_,
                         torch.nn.init.kaiming_uniform_, torch.nn.init.kaiming_normal_,
                         torch.nn.init.xavier_uniform_, torch.nn.init.xavier_normal_,
                         torch.nn.init.orthogonal_, torch.nn.init.sparse_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def _create_model(cfg: ModelConfig, preprocess_overrides: dict, random: bool = True) -> torch.nn.Module:
    """open_clip.create_model: with random weights seeded on CPU so "none" is reproducible, or
    (random=False) with weights left unset, for a checkpoint that the caller loads next."""
    import open_clip

    init = nullcontext() if random else _NoRandomInit()
    with torch.random.fork_rng(devices=[]), _drop_root_log("No pretrained weights loaded"), init:
        torch.manual_seed(cfg.seed)
        try:
            return open_clip.create_model(
                cfg.name, pretrained=None, device="cpu", precision="fp32",
                pretrained_image=False, pretrained_text=False,
                force_preprocess_cfg=preprocess_overrides or None,
            )
        except Exception as e:
            raise ModelError(f"cannot build model {cfg.name!r}: {type(e).__name__}: {weights._first_line(e)}") from None


def _as_uint8_hwc(x) -> np.ndarray | torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.uint8 or x.ndim != 3 or x.shape[-1] != 3:
            raise InputError(f"frames must be uint8 (H, W, 3) RGB, got {x.dtype} {tuple(x.shape)}")
        return x
    a = np.asarray(x)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
        raise InputError(f"frames must be uint8 (H, W, 3) RGB, got {a.dtype} {a.shape}")
    return a


def _to_rgb_array(image) -> np.ndarray:
    from PIL import Image, ImageOps

    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as im:
                return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read image {image}: {e}") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
        return a
    if a.dtype == np.uint8 and (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 4))):
        return np.asarray(Image.fromarray(a.squeeze(-1) if a.ndim == 3 and a.shape[-1] == 1 else a).convert("RGB"))
    raise InputError(f"images must be paths, PIL images or uint8 arrays, got {a.dtype} {a.shape}")


class Encoder:
    """open_clip image and text towers behind one small API; outputs are (N, D) float32 on CPU, L2-normalised."""

    def __init__(self, model: torch.nn.Module, identity: ModelIdentity, device: torch.device,
                 batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "auto"):
        from open_clip import get_model_preprocess_cfg
        from open_clip.transform import PreprocessCfg, image_transform_v2

        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self._model = model.to(device).eval()
        self.identity = identity
        self.model_config: ModelConfig | None = None  # set by `load`
        self.dim = identity.dim
        self.device = device
        self.batch_size = int(batch_size)
        # On CUDA the towers run under autocast: bf16 where supported, else fp16 (None: fp32).
        self.cuda_autocast: torch.dtype | None = None
        # Two pinned host buffers for CUDA uploads, used in turn: (buffer, event of its last copy).
        self._staging: list[tuple[torch.Tensor, "torch.cuda.Event"] | None] = [None, None]
        self._staging_turn = 1
        # On a CPU, images are encoded by a bf16 copy of the image tower where bf16 is native
        # (ModelConfig.precision).  `model` stays the fp32 open_clip model: the text tower, state
        # dicts, training and references see full precision.
        self.image_dtype = torch.float32
        self._image_model = self._model  # what encode_image runs on
        if device.type == "cuda" and precision != "fp32":
            self.cuda_autocast = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == "cpu" and (precision == "bf16" or (precision == "auto" and cpu_computes_bf16())):
            if isinstance(getattr(self._model, "visual", None), torch.nn.Module):
                self._image_model = _with_bf16_visual(self._model)
                self.image_dtype = torch.bfloat16
        self.precision = ({torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.cuda_autocast]
                          if self.cuda_autocast is not None else "bf16" if self.image_dtype == torch.bfloat16 else "fp32")
        pp_cfg = PreprocessCfg(**get_model_preprocess_cfg(model))
        size = pp_cfg.size
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.preprocess = image_transform_v2(pp_cfg, is_train=False)  # open_clip's PIL eval transform
        self._tensor_preprocess = TensorPreprocess(self.preprocess)
        if not self._tensor_preprocess.supported:
            log.warning("preprocessing step(s) %s have no tensor equivalent: encoding frames one by one through PIL",
                        ", ".join(self._tensor_preprocess.unsupported))

    @classmethod
    def load(cls, cfg: ModelConfig, batch_size: int = DEFAULT_BATCH_SIZE) -> "Encoder":
        """Build the model `cfg` names with the weights it asks for (see vidclip.model.weights)."""
        import open_clip

        from vidclip.model import hf

        config_preprocess = _register_config(cfg)
        device = _pick_device(cfg.device)
        _check_model_name(cfg.name)
        hf.check(cfg.name, open_clip.get_model_config(cfg.name).get("text_cfg", {}))
        source = weights.resolve(cfg)
        # the tag's (or, for a file, the model family's) preprocessing, then the config JSON's own
        model = _create_model(cfg, {**source.preprocess, **config_preprocess}, random=source.kind == "none")
        if source.kind == "none":
            log.warning("model %s has random weights (--pretrained none): search results will not be meaningful",
                        cfg.name)
            sha = weights.param_fingerprint(model)
        else:
            weights.load_weights(model, source.path)
            sha = weights.file_sha256(source.path)
        dim = int(open_clip.get_model_config(cfg.name)["embed_dim"])
        identity = ModelIdentity(name=cfg.name, pretrained=cfg.pretrained, weights_sha256=sha, dim=dim)
        encoder = cls(model, identity, device, batch_size=batch_size, precision=cfg.precision)
        encoder.model_config = cfg
        return encoder

    @property
    def model(self) -> torch.nn.Module:
        """The underlying open_clip model (eval mode, on `device`)."""
        return self._model

    # ------------------------------------------------------------------ geometry

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) to resize an upright (width x height) frame to at decode time: twice what open_clip's
        eval resize would produce (or the frame's own size when smaller); the tensor preprocessing
        finishes the resize (vidclip/model/geometry.py says why)."""
        if width < 1 or height < 1:
            raise InputError(f"frame size must be positive, got {width}x{height}")
        w, h = self.model_size(width, height)
        return oversampled(int(width), int(height), w, h)

    def model_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) open_clip's eval resize gives an upright width x height frame (before its crop)."""
        h, w = self._tensor_preprocess.resize_hw(int(height), int(width))
        return w, h

    # ------------------------------------------------------------------ encoding

    def _autocast(self):
        if self.device.type == "cuda" and self.cuda_autocast is not None:
            return torch.autocast("cuda", dtype=self.cuda_autocast)
        return nullcontext()

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and x.device.type == "cpu":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def _upload(self, part: list) -> torch.Tensor:
        """Same-size uint8 (H, W, 3) frames -> one (n, H, W, 3) uint8 tensor on the device.

        On CUDA the frames are stacked straight into one of two reusable pinned host buffers and
        copied asynchronously: one host copy instead of two (np.stack, then pin_memory), no page
        locking per batch, and while the GPU works on one batch the host fills the other buffer.
        A buffer is refilled only after its previous copy has finished (its event).
        """
        if self.device.type != "cuda":
            return torch.stack(part) if isinstance(part[0], torch.Tensor) else torch.from_numpy(np.stack(part))
        h, w = part[0].shape[:2]
        n = len(part) * h * w * 3
        k = self._staging_turn = 1 - self._staging_turn
        staging = self._staging
        if staging[k] is None or staging[k][0].numel() < n:
            staging[k] = (torch.empty(n, dtype=torch.uint8, pin_memory=True), torch.cuda.Event())
        else:
            staging[k][1].synchronize()  # its last copy to the device is done
        buf, done = staging[k]
        host = buf[:n].view(len(part), h, w, 3)  # (n, H, W, 3)
        if isinstance(part[0], torch.Tensor):
            torch.stack([f.cpu() for f in part], out=host)
        else:
            np.stack(part, out=host.numpy())
        x = host.to(self.device, non_blocking=True)
        done.record()
        return x

    def _preprocess_group(self, frames: list) -> torch.Tensor:
        """Same-size uint8 (H, W, 3) frames -> (n, 3, h, w) float32 model input on device."""
        if not self._tensor_preprocess.supported:
            from PIL import Image

            imgs = [Image.fromarray(f.cpu().numpy() if isinstance(f, torch.Tensor) else f) for f in frames]
            return torch.stack([self.preprocess(im) for im in imgs]).to(self.device)
        h, w = frames[0].shape[:2]
        resample = self._tensor_preprocess.pil_resample()
        if self.device.type == "cpu" and resample is not None and all(
                not isinstance(f, torch.Tensor) or f.device.type == "cpu" for f in frames):
            # On a CPU, PIL's uint8 resize is the reference itself (open_clip's eval transform runs it)
            # and costs 2.7 CPU-ms for a 796x448 -> 398x224 frame against 8.9 for torch's float
            # antialiased kernel; the tensor steps after it find the size already right.
            from PIL import Image

            oh, ow = self._tensor_preprocess.resize_hw(h, w)
            if (oh, ow) != (h, w):
                frames = [np.asarray(Image.fromarray(np.ascontiguousarray(f.numpy() if isinstance(f, torch.Tensor) else f))
                                     .resize((ow, oh), resample)) for f in frames]
                h, w = oh, ow
        per = max(1, _PREPROCESS_BUDGET // (3 * h * w))
        out = []
        for i in range(0, len(frames), per):
            x = self._upload(frames[i:i + per]).permute(0, 3, 1, 2)  # (n, 3, H, W) uint8
            out.append(self._tensor_preprocess(x))
        return torch.cat(out)

    @torch.inference_mode()
    def _encode_image_batch(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(b, 3, h, w) model input -> (b, D) float32 (L2-normalised unless asked not to), left on
        the model's device."""
        with self._autocast():
            z = self._image_model.encode_image(pixels.to(self.image_dtype)).float()  # (b, D)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_frames(self, frames, normalize: bool = True) -> torch.Tensor:
        """uint8 RGB frames -> (N, D) float32 CPU, L2-normalised, in input order.

        normalize=False returns the image tower's raw features: ingest keeps each frame's norm
        (modules imported from CLIP4Clip are fed unnormalised features) and normalises in
        `split_norms`.

        `frames`: a list of (H, W, 3) arrays/tensors (sizes may differ), or one (N, H, W, 3)
        array/tensor.  One forward pass per `batch_size` frames; inside a batch, frames are
        preprocessed per size group and scattered back to their input positions.
        """
        if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 4:
            items: Sequence = frames  # indexing yields (H, W, 3) views
        elif isinstance(frames, (np.ndarray, torch.Tensor)):
            raise InputError(f"frames must be (N, H, W, 3) or a list of (H, W, 3), got shape {tuple(frames.shape)}")
        else:
            items = list(frames)
        n = len(items)
        if n == 0:
            return torch.empty(0, self.dim, dtype=torch.float32)
        out = torch.empty(n, self.dim, dtype=torch.float32)
        # Vectors stay on the device until a few batches have run: no sync per batch, so the host
        # prepares the next batch while the GPU runs this one.
        pending: list[torch.Tensor] = []  # (b, D) each, in input order
        done = 0  # rows of `out` filled

        def collect() -> None:
            nonlocal done, pending
            if pending:
                z = torch.cat(pending).cpu()  # (m, D)
                out[done : done + len(z)] = z
                done, pending = done + len(z), []

        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                chunk = [_as_uint8_hwc(items[i]) for i in range(start, min(start + self.batch_size, n))]
                groups: dict[tuple[int, int], list[int]] = defaultdict(list)
                for j, f in enumerate(chunk):
                    groups[tuple(f.shape[:2])].append(j)
                order, parts = [], []
                for idx in groups.values():
                    parts.append(self._preprocess_group([chunk[j] for j in idx]))
                    order.extend(idx)
                pixels = torch.cat(parts)  # (b, 3, h, w) in grouped order
                z = self._encode_image_batch(pixels, normalize)  # (b, D) in grouped order
                if len(groups) > 1:
                    inverse = torch.empty(len(order), dtype=torch.long)
                    inverse[torch.tensor(order)] = torch.arange(len(order))
                    z = z[inverse.to(z.device)]  # (b, D) in input order
                pending.append(z)
                if len(pending) >= _PENDING_BATCHES:
                    collect()
        collect()
        return out

    def encode_images(self, images: Iterable) -> torch.Tensor:
        """PIL images, image paths (EXIF orientation applied) or uint8 arrays -> (N, D), like encode_frames."""
        from PIL import Image

        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        return self.encode_frames([_to_rgb_array(im) for im in images])

    @cached_property
    def tokenizer(self) -> Callable:
        """open_clip's tokenizer for this model (loaded on first use; vidclip/model/tokenizer.py)."""
        from vidclip.model import tokenizer

        if self.model_config is not None:
            _register_config(self.model_config)  # the config this encoder was built from, as it was
        return tokenizer.load(self.identity.name)

    @property
    def context_length(self) -> int:
        """Tokens the text tower reads per text (start and end included); a longer text is cut to it."""
        from vidclip.model import tokenizer

        return tokenizer.context_length(self.tokenizer)

    def count_tokens(self, text: str) -> int | None:
        """Tokens `text` becomes before the tokenizer cuts it to `context_length` (None: unknown tokenizer)."""
        from vidclip.model import tokenizer

        return tokenizer.count(self.tokenizer, text)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Strings -> (N, D) float32 CPU, L2-normalised, batched by `batch_size`."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("encode_text takes a list of strings")
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start:start + self.batch_size])
            with self._autocast():
                z = encode_tokens(self._model, self._to_device(tokens))
            out.append(F.normalize(z.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim, dtype=torch.float32)


def split_norms(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw image features (N, D) -> (unit vectors (N, D) float32, norms (N,) float32), normalised
    exactly as `encode_frames` normalises (F.normalize, eps 1e-12).  One thread: see torch_threads."""
    z = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))  # (N, D)
    with torch_threads(1):
        return F.normalize(z, dim=-1).numpy(), z.norm(dim=-1).numpy()


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to `n` for the block, then restored.  For small tensors use 1:
    on a busy machine every parallel region waits for a descheduled sibling thread, and a 300x512
    normalize took 15 ms on 2 threads against 0.08 ms on one (both cores loaded)."""
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encode_tokens(model, tokens: torch.Tensor) -> torch.Tensor:
    """model.encode_text(tokens), with the context cut after the last position that is pooled.

    open_clip pads every text to 77 tokens, but a query is usually 8-15.  In a CLIP text tower with
    a causal mask, position i attends only to positions <= i and LayerNorm works per position, so
    the pooled (EOT) position's output does not depend on anything after it: cutting the context
    there gives the same vector (max abs diff ~1e-7) for ~n/77 of the work (ViT-B-32 on the 2-core CPU:
    97 -> 33 ms per query, benchmarks/query_cpu.json).  Other towers (bidirectional, HF, first/last
    pooling) go through open_clip's own encode_text unchanged."""
    from open_clip.model import CLIP
    from open_clip.transformer import text_global_pool

    pool = getattr(model, "text_pool_type", None)
    if type(model) is not CLIP or model.attn_mask is None or pool not in ("argmax", "eos"):
        return model.encode_text(tokens)
    eos = getattr(model, "text_eos_id", None)
    if pool == "argmax":
        pooled = tokens.argmax(dim=-1)  # (B,): the EOT token has the highest id
    else:
        pooled = (tokens == eos).int().argmax(dim=-1)
    n = int(pooled.max()) + 1
    tokens = tokens[:, :n]  # (B, n)
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)  # (B, n, W)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, pool, eos_token_id=eos)  # (B, W)
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return x  # (B, D)


__all__ = ["DEFAULT_BATCH_SIZE", "Encoder", "ModelIdentity", "TensorPreprocess"]
