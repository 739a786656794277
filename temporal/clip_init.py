"""CLIP4Clip's initialisation trick: start seqTransf from CLIP's text tower.

The frame position table takes the first rows of the text positional embedding, and block i
takes text block i's weights.  The text tower's causal attention mask is a buffer of the tower,
not of its blocks, so it is never copied: frames attend both ways.  Takes any object shaped like
an open_clip CLIP (or CustomTextCLIP, via `.text`); imports nothing from open_clip.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

_ACTIVATION_CLASSES = {"QuickGELU": "quick_gelu", "GELU": "gelu"}


def init_from_clip(module: nn.Module, clip_model: nn.Module) -> bool:
    """Copy CLIP text-tower weights into a seq_transformer; return whether it applied.

    Applies only when the widths match; otherwise (or for other modules) logs a warning, leaves
    the module's random init untouched and returns False.  All checks run before any copy.
    """
    name = getattr(module, "name", type(module).__name__)
    if name != "seq_transformer":
        log.warning("init_from_clip: %r has no CLIP counterpart; keeping its random init", name)
        return False
    tower = _text_tower(clip_model)
    if tower is None:
        log.warning("init_from_clip: %s has no CLIP-style text transformer; seq_transformer keeps its random init",
                    type(clip_model).__name__)
        return False
    positions = tower.positional_embedding  # (context_length, width)
    blocks = list(tower.transformer.resblocks)
    dim, hp = module.dim, module.hparams
    width = positions.shape[-1]
    block_widths = {b.ln_1.weight.shape[0] for b in blocks if hasattr(b, "ln_1")}
    if width != dim or block_widths != {dim}:
        log.warning("init_from_clip: CLIP text width %d (blocks %s) differs from the embedding dim %d; "
                    "seq_transformer keeps its random init", width, sorted(block_widths), dim)
        return False
    n_blocks = min(hp.layers, len(blocks))
    states = []
    for i, block in enumerate(blocks[:n_blocks]):
        heads = getattr(getattr(block, "attn", None), "num_heads", None)
        if heads != hp.heads:
            log.warning("init_from_clip: CLIP text block %d has %s heads, seq_transformer %d; keeping its random init",
                        i, heads, hp.heads)
            return False
        state = _fold_layer_scale(block.state_dict())
        target = module.resblocks[i].state_dict()
        if set(state) != set(target) or any(state[k].shape != target[k].shape for k in target):
            log.warning("init_from_clip: CLIP text block %d does not match a CLIP residual attention block "
                        "(keys %s); seq_transformer keeps its random init", i, sorted(set(state) ^ set(target)))
            return False
        states.append(state)

    n_positions = min(hp.max_positions, positions.shape[0])
    with torch.no_grad():
        table = module.frame_position_embeddings.weight  # (max_positions, D)
        table[:n_positions].copy_(positions[:n_positions].to(table.dtype))
        for block, state in zip(module.resblocks, states):
            target = block.state_dict()
            block.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()})

    if n_positions < hp.max_positions or n_blocks < hp.layers:
        log.warning("init_from_clip: CLIP text tower has %d positions and %d blocks; positions >= %d and blocks >= %d "
                    "keep their random init", positions.shape[0], len(blocks), n_positions, n_blocks)
    clip_act = _ACTIVATION_CLASSES.get(type(getattr(blocks[0].mlp, "gelu", None)).__name__) if blocks else None
    if clip_act is not None and clip_act != hp.activation:
        log.warning("init_from_clip: CLIP text blocks use %s but seq_transformer uses %s; "
                    "build it with activation=%r to match exactly", clip_act, hp.activation, clip_act)
    log.info("init_from_clip: seq_transformer initialised from CLIP text tower (%d positions, %d blocks)",
             n_positions, n_blocks)
    return True


def _text_tower(clip_model: nn.Module):
    """The object holding `positional_embedding` and `transformer.resblocks`, or None."""
    for tower in (clip_model, getattr(clip_model, "text", None)):
        if tower is None:
            continue
        positions = getattr(tower, "positional_embedding", None)
        resblocks = getattr(getattr(tower, "transformer", None), "resblocks", None)
        if isinstance(positions, torch.Tensor) and positions.dim() == 2 and isinstance(resblocks, nn.ModuleList):
            return tower
    return None


def _fold_layer_scale(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold open_clip's optional LayerScale (ls_1, ls_2) into the projection before it.

    gamma * (W x + b) == (gamma[:, None] * W) x + gamma * b, so the block stays exact without one.
    """
    state = dict(state)
    for gamma_key, proj in (("ls_1.gamma", "attn.out_proj"), ("ls_2.gamma", "mlp.c_proj")):
        gamma = state.pop(gamma_key, None)  # (D,)
        if gamma is not None:
            state[f"{proj}.weight"] = gamma.unsqueeze(1) * state[f"{proj}.weight"]  # (D, D_in)
            state[f"{proj}.bias"] = gamma * state[f"{proj}.bias"]  # (D,)
    return state
