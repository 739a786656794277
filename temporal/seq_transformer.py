"""CLIP4Clip's seqTransf: a small CLIP-text-style transformer over the frame sequence.

    x   = frames + frame_position_embeddings[0..n-1]       # n = number of valid frames
    x   = resblocks(x)                                      # bidirectional, padding masked from keys
    x   = x + frames                                        # residual of the input
    out = normalize(masked_mean(normalize(x)))

Blocks are named like open_clip's ResidualAttentionBlock (ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj)
so `temporal.init_from_clip` can copy CLIP text-tower blocks in by state-dict key.  Masked-out
frames are removed before positions are assigned (see `temporal.mean.compact`), so padding,
wherever it sits, never changes the output.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from temporal.mean import masked_mean, prepare_sequence
from temporal.registry import TemporalError, check_frames_input, parse_hparams, register

ACTIVATIONS = ("quick_gelu", "gelu")


@dataclass(frozen=True)
class TransformerConfig:
    layers: int = 4  # CLIP4Clip's cross_num_hidden_layers
    heads: int = 0  # 0 = D // 64 (CLIP's rule), at least 1
    max_positions: int = 77  # CLIP's text context length, whose position table initialises ours
    activation: str = "quick_gelu"  # CLIP4Clip (OpenAI CLIP) uses QuickGELU; "gelu" matches GELU open_clip towers
    ln_eps: float = 1e-5  # LayerNorm eps: CLIP's 1e-5; CLIP4Clip's cross-module blocks use 1e-12
    frames: str = "normalized"  # "raw": unnormalised image features, as CLIP4Clip feeds them

    def __post_init__(self):
        for field in ("layers", "max_positions"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TemporalError(f"seq_transformer {field} must be a positive int, got {value!r}")
        if isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 0:
            raise TemporalError(f"seq_transformer heads must be an int >= 0 (0 = D // 64), got {self.heads!r}")
        if self.activation not in ACTIVATIONS:
            raise TemporalError(f"seq_transformer activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if isinstance(self.ln_eps, bool) or not isinstance(self.ln_eps, (int, float)) or not 0 < self.ln_eps < 1:
            raise TemporalError(f"seq_transformer ln_eps must be a number in (0, 1), got {self.ln_eps!r}")
        check_frames_input("seq_transformer", self.frames)


class QuickGELU(nn.Module):
    """OpenAI CLIP's GELU approximation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block of CLIP's text transformer: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, dim: int, heads: int, activation: str, ln_eps: float = 1e-5):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(dim, dim * 4)),
            ("gelu", QuickGELU() if activation == "quick_gelu" else nn.GELU()),
            ("c_proj", nn.Linear(dim * 4, dim)),
        ]))

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """x (B, L, D); padding (B, L) bool, True = masked out (nn.MultiheadAttention's convention)."""
        h = self.ln_1(x)  # (B, L, D)
        x = x + self.attn(h, h, h, key_padding_mask=padding, need_weights=False)[0]  # (B, L, D)
        x = x + self.mlp(self.ln_2(x))  # (B, L, D)
        return x


@register("seq_transformer")
class SeqTransformer(nn.Module):
    name: str  # set by @register

    def __init__(self, dim: int, **hparams):
        super().__init__()
        hp = parse_hparams(TransformerConfig, self.name, hparams)
        heads = hp.heads or max(1, dim // 64)
        if dim % heads:
            raise TemporalError(f"seq_transformer dim {dim} is not divisible by heads {heads}")
        self.hparams = TransformerConfig(**{**asdict(hp), "heads": heads})
        self.dim = dim
        self.frame_position_embeddings = nn.Embedding(hp.max_positions, dim)
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(dim, heads, hp.activation, float(hp.ln_eps)) for _ in range(hp.layers)]
        )
        self.apply(_init_weights)

    @property
    def config(self) -> dict:
        return {"name": self.name, "dim": self.dim, "hparams": asdict(self.hparams)}

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        prepared = prepare_sequence(frames, mask, self.dim, self.frame_position_embeddings.weight.dtype)
        if prepared is None:
            return frames.new_zeros(0, self.dim)  # (0, D)
        frames, mask = prepared  # (B, L, D), (B, L) valid prefix
        L = frames.shape[1]
        if L > self.hparams.max_positions:
            raise TemporalError(
                f"clip has {L} valid frames but seq_transformer has {self.hparams.max_positions} positions; "
                "sample fewer frames per clip"
            )
        x = frames + self.frame_position_embeddings.weight[:L].unsqueeze(0)  # (B, L, D)
        padding = ~mask  # (B, L)
        for block in self.resblocks:
            x = block(x, padding)  # (B, L, D)
        x = x + frames  # (B, L, D)
        x = F.normalize(x, dim=-1)  # (B, L, D)
        pooled = masked_mean(x, mask)  # (B, D)
        return F.normalize(pooled, dim=-1)  # (B, D)


def _init_weights(module: nn.Module) -> None:
    """CLIP4Clip's init: N(0, 0.02) for Linear/Embedding weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
