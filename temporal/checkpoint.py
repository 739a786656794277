"""A temporal module on disk: `config.json` (architecture + the CLIP model it was trained on)
and `weights.safetensors` (never pickle).

    {"name": "seq_transformer", "dim": 512, "hparams": {...}, "clip_model": "ViT-B-32/openai",
     "format_version": 1}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from temporal.registry import TemporalError, build

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


def save(module: nn.Module, out_dir: str | os.PathLike, clip_model: str) -> None:
    """Write `module` to `out_dir` (created if needed), recording the CLIP model its inputs come from."""
    config = getattr(module, "config", None)
    if not isinstance(config, dict) or not {"name", "dim", "hparams"} <= set(config):
        raise TemporalError(f"{type(module).__name__} is not a temporal module (no .config); build it with temporal.build")
    if not isinstance(clip_model, str) or not clip_model:
        raise TemporalError("save needs the CLIP model name the module was trained on (a non-empty str)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TemporalError(f"checkpoint path {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    payload = {**config, "clip_model": clip_model, "format_version": FORMAT_VERSION}
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    # write to temporary names, then rename: a crash never leaves a half-written checkpoint in place
    tmp_weights = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp_weights), metadata={"format": "pt"})
    tmp_config = out / (CONFIG_FILE + ".tmp")
    tmp_config.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_weights, out / WEIGHTS_FILE)
    os.replace(tmp_config, out / CONFIG_FILE)


def read_config(ckpt_dir: str | os.PathLike) -> dict:
    """The parsed, validated `config.json` of a checkpoint directory."""
    path = Path(ckpt_dir)
    if not path.is_dir():
        raise TemporalError(f"temporal checkpoint {path} is not a directory")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise TemporalError(f"temporal checkpoint {path} has no {CONFIG_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TemporalError(f"{config_path} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise TemporalError(f"{config_path} must hold a JSON object")
    missing = sorted({"name", "dim", "hparams", "clip_model", "format_version"} - set(config))
    if missing:
        raise TemporalError(f"{config_path} lacks {missing}")
    if config["format_version"] != FORMAT_VERSION:
        raise TemporalError(f"{config_path} has format_version {config['format_version']!r}; this vidclip reads {FORMAT_VERSION}")
    if not isinstance(config["hparams"], dict):
        raise TemporalError(f"{config_path}: hparams must be a JSON object")
    return config


def load(ckpt_dir: str | os.PathLike, expect_clip_model: str | None = None) -> nn.Module:
    """The module saved in `ckpt_dir`, in eval mode.

    With `expect_clip_model`, refuse a checkpoint trained on another CLIP model's vectors.
    """
    config = read_config(ckpt_dir)
    if expect_clip_model is not None and config["clip_model"] != expect_clip_model:
        raise TemporalError(
            f"temporal checkpoint {ckpt_dir} was trained on CLIP model {config['clip_model']!r}, "
            f"not {expect_clip_model!r}"
        )
    module = build(config["name"], config["dim"], **config["hparams"])
    expected = module.state_dict()
    weights_path = Path(ckpt_dir) / WEIGHTS_FILE
    if not weights_path.is_file():
        if expected:
            raise TemporalError(f"temporal checkpoint {ckpt_dir} has no {WEIGHTS_FILE}")
        return module.eval()
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise TemporalError(f"{weights_path} is not a readable safetensors file: {exc}") from exc
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise TemporalError(f"{weights_path} does not fit {config['name']!r}: missing {missing}, unexpected {extra}")
    wrong = [k for k, v in tensors.items() if v.shape != expected[k].shape]
    if wrong:
        raise TemporalError(f"{weights_path} has tensors of the wrong shape for {config['name']!r}: {wrong}")
    module.load_state_dict(tensors)
    return module.eval()


def fingerprint(ckpt_dir: str | os.PathLike) -> str:
    """sha256 hex digest over the bytes of config.json, then weights.safetensors (if present)."""
    read_config(ckpt_dir)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = Path(ckpt_dir) / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()
