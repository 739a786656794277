"""CLIP4Clip checkpoints -> temporal modules with CLIP4Clip's own outputs.

A CLIP4Clip state dict (`pytorch_model.bin.N`) holds `clip.*` (the OpenAI-layout CLIP) and, by
similarity header:
    meanP      nothing more                                   -> mean
    seqLSTM    lstm_visual.*  (+ an unused frame_position_embeddings)  -> seq_lstm
    seqTransf  frame_position_embeddings.weight, transformerClip.resblocks.N.*  -> seq_transformer
CLIP4Clip feeds seqLSTM / seqTransf the image tower's unnormalised features and normalises only
after the residual; its cross-module LayerNorm is TF-style with eps 1e-12.  The modules built here
record both (frames="raw", ln_eps=1e-12), so they reproduce CLIP4Clip's video vectors.
tightTransf (text-conditioned) has no text-independent video vector and is refused.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from temporal.registry import TemporalError, build

CLIP_PREFIX = "clip."
_BLOCK = re.compile(r"^transformerClip\.resblocks\.(\d+)\.(.+)$")
_LSTM = re.compile(r"^lstm_visual\.((?:weight|bias)_(?:ih|hh)_l(\d+))$")
_TIGHT = ("cross.", "similarity_dense.")  # tightTransf's cross encoder


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(clip state dict without its `clip.` prefix, the temporal part) of a CLIP4Clip state dict.
    A DataParallel `module.` prefix is dropped."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    clip = {k[len(CLIP_PREFIX):]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(CLIP_PREFIX)}
    return clip, rest


def sim_header(rest: dict[str, torch.Tensor]) -> str:
    """meanP | seqLSTM | seqTransf, from which temporal keys a checkpoint carries."""
    tight = sorted(k for k in rest if k.startswith(_TIGHT))
    if tight:
        raise TemporalError(f"a tightTransf checkpoint ({tight[0]}, ...): its similarity depends on the text, so it "
                            "has no video vector to store; only meanP, seqLSTM and seqTransf can be imported")
    if any(_BLOCK.match(k) for k in rest):
        return "seqTransf"
    if any(_LSTM.match(k) for k in rest):
        return "seqLSTM"
    return "meanP"


def build_module(rest: dict[str, torch.Tensor], dim: int) -> nn.Module:
    """The temporal module holding a CLIP4Clip checkpoint's temporal weights, loaded strictly:
    a missing or unexpected key is one TemporalError naming it."""
    header = sim_header(rest)
    if header == "meanP":
        _refuse_unexpected(rest, set())
        return build("mean", dim)
    if header == "seqLSTM":
        layers = 1 + max(int(m.group(2)) for k in rest if (m := _LSTM.match(k)))
        module = build("seq_lstm", dim, layers=layers, frames="raw")
        mapped = {f"lstm.{m.group(1)}": v for k, v in rest.items() if (m := _LSTM.match(k))}
        used = {k for k in rest if _LSTM.match(k)} | {"frame_position_embeddings.weight"}  # unused by seqLSTM
    else:
        pos = rest.get("frame_position_embeddings.weight")
        if pos is None:
            raise TemporalError("a seqTransf checkpoint without frame_position_embeddings.weight")
        layers = 1 + max(int(m.group(1)) for k in rest if (m := _BLOCK.match(k)))
        module = build("seq_transformer", dim, layers=layers, max_positions=int(pos.shape[0]),
                       activation="quick_gelu", ln_eps=1e-12, frames="raw")
        mapped = {f"resblocks.{m.group(1)}.{m.group(2)}": v for k, v in rest.items() if (m := _BLOCK.match(k))}
        mapped["frame_position_embeddings.weight"] = pos
        used = {k for k in rest if _BLOCK.match(k)} | {"frame_position_embeddings.weight"}
    _refuse_unexpected(rest, used)
    own = module.state_dict()
    extra = sorted(k for k in mapped if k not in own)
    if extra:
        raise TemporalError(f"unexpected key(s) in the {header} checkpoint: {', '.join(_c4c_name(k) for k in extra[:4])}"
                            + (" ..." if len(extra) > 4 else ""))
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise TemporalError(f"{header} checkpoint is missing {len(missing)} key(s): {', '.join(_c4c_name(k) for k in missing[:4])}"
                            + (" ..." if len(missing) > 4 else ""))
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in mapped.items() if v.shape != own[k].shape]
    if wrong:
        raise TemporalError(f"{header} checkpoint has tensors of the wrong shape for D={dim}: {'; '.join(wrong[:3])}")
    module.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    return module.eval()


def _c4c_name(key: str) -> str:
    """A vidclip module key under the name CLIP4Clip gives it (what the user's file should hold)."""
    if key.startswith("resblocks."):
        return "transformerClip." + key
    if key.startswith("lstm."):
        return "lstm_visual." + key[len("lstm."):]
    return key


def _refuse_unexpected(rest: dict, used: set) -> None:
    unexpected = sorted(set(rest) - used)
    if unexpected:
        raise TemporalError(f"unexpected key(s) in the CLIP4Clip checkpoint: {', '.join(unexpected[:4])}"
                            + (" ..." if len(unexpected) > 4 else ""))
