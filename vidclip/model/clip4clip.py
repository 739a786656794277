"""`vidclip import-clip4clip`: a CLIP4Clip checkpoint -> open_clip weights + a temporal checkpoint.

    DIR/clip.safetensors   the `clip.*` weights in open_clip's layout (OpenAI CLIP's key names)
    DIR/temporal/          meanP -> mean, seqLSTM -> seq_lstm, seqTransf -> seq_transformer, with
                           CLIP4Clip's raw-feature input and LayerNorm eps (temporal/clip4clip.py)

Then `vidclip ingest --model NAME --pretrained DIR/clip.safetensors` and `vidclip reindex
--temporal DIR/temporal` give CLIP4Clip's own video vectors for the same frames.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vidclip.config import ModelConfig
from vidclip.errors import InputError, ModelError


@dataclass(frozen=True)
class ImportReport:
    model: str  # the open_clip architecture the CLIP weights fit
    sim_header: str  # meanP | seqLSTM | seqTransf
    temporal: str  # the vidclip module it became
    clip_weights: str  # path of the written open_clip checkpoint
    temporal_dir: str  # path of the written temporal checkpoint

    def to_dict(self) -> dict:
        return asdict(self)


def import_clip4clip(ckpt: str, out_dir: str, model: str | None = None, model_config: str | None = None) -> ImportReport:
    """Convert `ckpt` into `out_dir`; `model` names the open_clip architecture when the weights'
    shapes do not identify one (with `model_config` registering a custom one)."""
    import temporal
    from temporal.clip4clip import build_module, sim_header, split_state
    from vidclip.model import encoder, weights

    state = weights.read_state_dict(ckpt)
    clip_state, rest = split_state(state)
    if not clip_state:
        raise InputError(f"{ckpt}: no clip.* weights: not a CLIP4Clip checkpoint")
    header = sim_header(rest)
    cfg = ModelConfig(name=model or infer_architecture(clip_state, ckpt), pretrained="none",
                      config_path=os.path.abspath(model_config) if model_config else None)
    encoder._register_config(cfg)
    encoder._check_model_name(cfg.name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clip_path = out / "clip.safetensors"
    _save_tensors(clip_state, clip_path)
    clip_model = encoder._create_model(cfg, {}, random=False)  # loaded next
    try:
        weights.load_weights(clip_model, clip_path)  # the written file loads strictly, as ingest will load it
    except ModelError:
        clip_path.unlink(missing_ok=True)
        raise
    dim = int(clip_model.text_projection.shape[1]) if getattr(clip_model, "text_projection", None) is not None else None
    if dim is None:
        raise ModelError(f"{cfg.name} has no text projection: not an OpenAI-layout CLIP")
    module = build_module(rest, dim)
    temporal_dir = out / "temporal"
    temporal.save(module, temporal_dir, clip_model=cfg.name)
    return ImportReport(model=cfg.name, sim_header=header, temporal=module.config["name"],
                        clip_weights=str(clip_path), temporal_dir=str(temporal_dir))


def infer_architecture(clip_state: dict[str, torch.Tensor], ckpt: str) -> str:
    """The open_clip model whose config matches an OpenAI-layout CLIP state dict's shapes,
    preferring QuickGELU (OpenAI CLIP's activation, which CLIP4Clip keeps)."""
    import open_clip

    try:
        conv = clip_state["visual.conv1.weight"]  # (width, 3, patch, patch)
        grid = round((clip_state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        want = {
            "embed_dim": int(clip_state["text_projection"].shape[1]),
            "vision": (int(conv.shape[0]), _blocks(clip_state, "visual.transformer.resblocks."), int(conv.shape[-1]),
                       int(conv.shape[-1]) * grid),
            "text": (int(clip_state["ln_final.weight"].shape[0]), _blocks(clip_state, "transformer.resblocks."),
                     int(clip_state["positional_embedding"].shape[0]), int(clip_state["token_embedding.weight"].shape[0])),
        }
    except KeyError as exc:
        raise InputError(f"{ckpt}: clip.* weights lack {exc.args[0]}: only ViT CLIP4Clip checkpoints can be imported") from None
    found = []
    for name in open_clip.list_models():
        c = open_clip.get_model_config(name) or {}
        v, t = c.get("vision_cfg", {}), c.get("text_cfg", {})
        if c.get("embed_dim") != want["embed_dim"] or isinstance(v.get("layers"), (list, tuple)):
            continue
        vision = (v.get("width"), v.get("layers"), v.get("patch_size"), v.get("image_size"))
        text = (t.get("width"), t.get("layers"), t.get("context_length", 77), t.get("vocab_size", 49408))
        if vision == want["vision"] and text == want["text"] and not t.get("hf_model_name") and not v.get("timm_model_name"):
            found.append((not c.get("quick_gelu", False), len(name), name))
    if not found:
        raise InputError(f"{ckpt}: no open_clip architecture matches its CLIP weights (vision width/layers/patch/size "
                         f"{want['vision']}); pass --model NAME (and --model-config JSON for a custom one)")
    return sorted(found)[0][2]


def _blocks(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().float().contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
