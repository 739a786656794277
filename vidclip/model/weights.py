"""Where CLIP weights come from, and loading them without running foreign code.

`ModelConfig.pretrained` is one of:
  - an open_clip tag ("laion2b_s34b_b79k"): resolved in open_clip's registry and
    fetched with open_clip's own `download_pretrained` (Hugging Face cache);
  - a local checkpoint file (.safetensors, or .pt / .pth / .bin read with
    `torch.load(weights_only=True)`): a pickle that needs arbitrary code is refused; it is
    preprocessed as the model's tags are when they all agree (`family_preprocess`);
  - "none": seeded random weights (a warning says results mean nothing).

Offline, a tag that is not cached fails fast: one HEAD request without retries
(instant on DNS failure or refused connection, at most `PROBE_TIMEOUT_S` on a network
that drops packets) instead of huggingface_hub's ~45 s of retries, with a one-line
error that says how to pass a local file instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import warnings
from dataclasses import dataclass, field

import torch

from vidclip.config import ModelConfig
from vidclip.errors import ModelError, UnsafeCheckpointError, WeightsUnavailableError

log = logging.getLogger("vidclip")

RANDOM = "none"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
# Seconds the reachability probe waits for the hub; HF_HUB_ETAG_TIMEOUT overrides it.
PROBE_TIMEOUT_S = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 5)
# Preprocessing keys a pretrained tag may override (as open_clip's create_model merges them).
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


@dataclass(frozen=True)
class WeightsSource:
    """Resolved weights: kind "tag" | "file" | "none", the local file (None for "none"),
    and the preprocessing overrides a tag carries (mean/std/interpolation/resize_mode)."""

    kind: str
    spec: str
    path: str | None = None
    preprocess: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- classify


def _tag_cfg(cfg: ModelConfig) -> dict:
    import open_clip

    return open_clip.get_pretrained_cfg(cfg.name, cfg.pretrained) or {}


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.lower().endswith(CHECKPOINT_SUFFIXES) or os.path.exists(spec)


def _kind(cfg: ModelConfig) -> str:
    if cfg.pretrained.strip().lower() == RANDOM:
        return "none"
    if _tag_cfg(cfg):
        return "tag"
    if _looks_like_path(cfg.pretrained):
        return "file"
    return "unknown"


def _unknown_tag(cfg: ModelConfig) -> WeightsUnavailableError:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(cfg.name)
    valid = ", ".join(tags) if tags else "none known to open_clip"
    return WeightsUnavailableError(
        f"unknown pretrained tag {cfg.pretrained!r} for {cfg.name} (valid tags: {valid}); "
        f"or pass a checkpoint file path, or --pretrained none for random weights"
    )


def _hub_candidates(tag_cfg: dict) -> tuple[str, list[str]]:
    """(repo_id, filenames in the order open_clip's download tries them)."""
    from open_clip.constants import HF_WEIGHTS_NAME
    from open_clip.pretrained import _get_safe_alternatives

    repo_id, filename = os.path.split(tag_cfg["hf_hub"])
    filename = filename or HF_WEIGHTS_NAME
    return repo_id, [*_get_safe_alternatives(filename), filename]


def _cached_path(tag_cfg: dict) -> str | None:
    """The tag's checkpoint if it is already on disk (HF cache or open_clip's url cache), else None."""
    if tag_cfg.get("file"):
        return tag_cfg["file"] if os.path.isfile(tag_cfg["file"]) else None
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, names = _hub_candidates(tag_cfg)
        for name in names:
            hit = try_to_load_from_cache(repo_id, name)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
        return None
    if tag_cfg.get("url"):
        target = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(tag_cfg["url"]))
        return target if os.path.isfile(target) else None
    return None


def is_cached(cfg: ModelConfig) -> bool:
    """True if the weights can be loaded with no network: "none", an existing file, or a cached tag."""
    kind = _kind(cfg)
    if kind == "none":
        return True
    if kind == "file":
        return os.path.isfile(os.path.expanduser(cfg.pretrained))
    if kind == "tag":
        return _cached_path(_tag_cfg(cfg)) is not None
    return False


# ----------------------------------------------------------------------------- resolve


def _offline_error(cfg: ModelConfig, tag_cfg: dict, reason: str) -> WeightsUnavailableError:
    where = ""
    if tag_cfg.get("hf_hub"):
        repo_id, names = _hub_candidates(tag_cfg)
        where = f" (https://huggingface.co/{repo_id}, file {' or '.join(names)})"
    reason = " ".join(str(reason).split())[:200]
    return WeightsUnavailableError(
        f"cannot download pretrained weights {cfg.pretrained!r} for {cfg.name} (no network? {reason}): "
        f"download them elsewhere{where} and pass the file with --pretrained /path/to/open_clip_model.safetensors, "
        f"or use --pretrained none for random weights"
    )


def _probe_hub(tag_cfg: dict) -> str | None:
    """One HEAD request, no retries, through huggingface_hub's own HTTP session (same proxies and
    certificates as the real download): None if the hub answered with any status, else the reason.

    huggingface_hub's `get_hf_file_metadata` is not used: it first fetches an agent registry
    (3 s more when the network is a black hole), and its download path retries for ~25 s per file.
    """
    repo_id, names = _hub_candidates(tag_cfg)
    return probe_hub(repo_id, names[0])  # the file the download itself will request first


def probe_hub(repo_id: str, filename: str) -> str | None:
    """One HEAD request for `filename` of hub repo `repo_id` (as `_probe_hub`): None if the hub
    answered with any status, else why it could not be reached."""
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = hf_hub_url(repo_id, filename)
    try:
        get_session().head(url, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    except Exception as e:  # connect error, DNS failure, timeout, TLS failure
        return f"{type(e).__name__}: {e}"
    return None


def _probe_url(url: str) -> str | None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def resolve(cfg: ModelConfig) -> WeightsSource:
    """Find (and for a tag, download if needed) the weights `cfg` asks for.

    Raises WeightsUnavailableError for an unknown tag, a missing file, or a tag that
    cannot be downloaded (fast when offline).
    """
    kind = _kind(cfg)
    if kind == "none":
        return WeightsSource("none", cfg.pretrained)
    if kind == "unknown":
        raise _unknown_tag(cfg)
    if kind == "file":
        path = os.path.expanduser(cfg.pretrained)
        if not os.path.isfile(path):
            raise WeightsUnavailableError(f"checkpoint file not found: {cfg.pretrained}")
        return WeightsSource("file", cfg.pretrained, path=path, preprocess=family_preprocess(cfg.name))

    import open_clip

    tag_cfg = _tag_cfg(cfg)
    preprocess = {k: tag_cfg[k] for k in _PREPROCESS_KEYS if k in tag_cfg}
    path = _cached_path(tag_cfg)
    if path is None:
        reason = _probe_hub(tag_cfg) if tag_cfg.get("hf_hub") else _probe_url(tag_cfg.get("url", ""))
        if reason is not None:
            raise _offline_error(cfg, tag_cfg, reason)
        log.info("downloading pretrained weights %r for %s", cfg.pretrained, cfg.name)
        try:
            path = open_clip.download_pretrained(tag_cfg)
        except Exception as e:
            raise _offline_error(cfg, tag_cfg, f"{type(e).__name__}: {e}") from None
        if not path or not os.path.isfile(path):
            raise _offline_error(cfg, tag_cfg, "download returned no file")
    return WeightsSource("tag", cfg.pretrained, path=path, preprocess=preprocess)


def family_preprocess(name: str) -> dict:
    """The preprocessing every pretrained tag of model `name` shares (mean/std/interpolation/
    resize_mode), for a local checkpoint of that model: a SigLIP checkpoint file is preprocessed as
    SigLIP's tags are (mean/std 0.5, squash), not with open_clip's OpenAI defaults.  {} when the model
    has no tags or its tags disagree (open_clip's defaults then apply; a model config JSON's
    "preprocess_cfg" overrides either)."""
    import open_clip

    found = []
    for tag in open_clip.list_pretrained_tags_by_model(name):
        tag_cfg = open_clip.get_pretrained_cfg(name, tag) or {}
        found.append({k: tag_cfg[k] for k in _PREPROCESS_KEYS if k in tag_cfg})
    if not found or any(f != found[0] for f in found):
        return {}
    return found[0]


# ----------------------------------------------------------------------------- read + load


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint into a flat state dict on CPU, never executing pickled code.

    Accepts a plain state dict, {"state_dict": ...} and DDP "module." prefixes.
    """
    path = str(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"checkpoint file not found: {path}")
    if path.lower().endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            obj = load_file(path, device="cpu")
        except Exception as e:
            raise ModelError(f"cannot read safetensors checkpoint {name}: {type(e).__name__}: {_first_line(e)}") from None
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": we refuse or accept anyway
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights only load failed" in str(e).lower():
                raise UnsafeCheckpointError(
                    f"refusing to load {path}: unpickling it needs more than plain tensors "
                    f"({_unpickler_reason(e)}); only weights are accepted: re-save the state_dict as .safetensors"
                ) from None
            raise ModelError(f"cannot read checkpoint {name}: {_first_line(e)}") from None
        except Exception as e:
            raise ModelError(f"cannot read checkpoint {name}: {type(e).__name__}: {_first_line(e)}") from None

    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"checkpoint {name} holds no state dict of tensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint file into an open_clip model (strict), with one-line errors on mismatch.

    The state-dict fix-ups mirror open_clip.factory.load_checkpoint (which only takes a path
    and would read the file a second time).
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    sd = read_state_dict(path)
    name = os.path.basename(str(path))
    try:
        sd = convert_state_dict(model, sd)
        if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
            sd = convert_to_custom_text_state_dict(sd)
        for key in ("logit_scale", "logit_bias"):
            own = getattr(model, key, None)
            if key in sd and own is not None and own.ndim != sd[key].ndim:
                sd[key] = sd[key].reshape(own.shape)
        if "logit_bias" not in sd and getattr(model, "logit_bias", None) is not None and "logit_scale" in sd:
            sd["logit_bias"] = torch.zeros_like(sd["logit_scale"])
        sd.pop("text.transformer.embeddings.position_ids", None)
        resize_pos_embed(sd, model)
        resize_text_pos_embed(sd, model)
    except Exception as e:
        raise ModelError(f"checkpoint {name} does not fit this architecture: {type(e).__name__}: {_first_line(e)}") from None

    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
            if keys:
                example = keys[0]
                if label == "shape-mismatched":
                    example += f" {tuple(sd[example].shape)} vs {tuple(own[example].shape)}"
                parts.append(f"{len(keys)} {label} (e.g. {example})")
        model_name = type(model).__name__
        raise ModelError(f"checkpoint {name} does not match the {model_name} architecture: " + ", ".join(parts))
    model.load_state_dict(sd, strict=True)


# ----------------------------------------------------------------------------- identity


_sha_memo: dict[tuple, str] = {}
# A digest is kept on disk only for a file whose last change is older than this: file times tick
# coarsely (a few ms), so a file written again within the same tick would keep its key ("racy git").
SETTLED_S = 2.0


def sha_cache_dir() -> str:
    """Where checkpoint digests are kept between processes: $VIDCLIP_CACHE/sha256, else
    $XDG_CACHE_HOME/vidclip/sha256, else ~/.cache/vidclip/sha256."""
    base = os.environ.get("VIDCLIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vidclip")
    return os.path.join(base, "sha256")


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Streaming sha256 of a file, kept per process and on disk (`sha_cache_dir`) under the file's
    path, size, mtime, ctime and inode: hashing ViT-B-32's checkpoint costs 0.4 CPU-s and ViT-L-14's
    about 1.2, paid before every search and by every encoder process otherwise.  Any write to the
    file (even one that restores its mtime) changes its ctime, so a changed file is hashed again.
    A cache that cannot be read or written is skipped."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key in _sha_memo:
        return _sha_memo[key]
    entry = os.path.join(sha_cache_dir(), hashlib.sha256(repr(key).encode()).hexdigest())
    try:
        with open(entry, encoding="ascii") as f:
            digest = f.read(64)
    except (OSError, UnicodeDecodeError):
        digest = ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        h = hashlib.sha256()
        with open(real, "rb") as f:
            while chunk := f.read(chunk_bytes):
                h.update(chunk)
        digest = h.hexdigest()
        try:
            if time.time() - st.st_ctime_ns / 1e9 < SETTLED_S:
                raise OSError("changed too recently to be keyed by its times")
            os.makedirs(os.path.dirname(entry), exist_ok=True)
            tmp = f"{entry}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(digest)
            os.replace(tmp, entry)  # whole or absent, whoever writes it at the same time
        except OSError:
            pass
    _sha_memo[key] = digest
    return digest


def param_fingerprint(model: torch.nn.Module, samples: int = 64) -> str:
    """Cheap deterministic identity of a model's parameters: sha256 over every tensor's
    name, shape, dtype and `samples` evenly strided values (no arithmetic, so it is exact)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        flat = t.detach().reshape(-1).to("cpu", torch.float32)
        step = max(1, flat.numel() // samples)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(flat[::step][:samples].contiguous().numpy().tobytes())
    return h.hexdigest()


def _unpickler_reason(e: BaseException) -> str:
    """The informative line of torch's weights-only refusal (e.g. 'unsupported GLOBAL posix.system')."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        low = ln.lower()
        if ("unsupported" in low or "global" in low) and "weights_only" not in low and "pytorch 2.6" not in low:
            return ln[:200]
    return "rejected by torch's weights-only unpickler"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


__all__ = [
    "WeightsSource",
    "file_sha256",
    "is_cached",
    "load_weights",
    "param_fingerprint",
    "read_state_dict",
    "resolve",
]
