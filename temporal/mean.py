"""Masked mean pooling (CLIP4Clip's meanP), and the mask handling every aggregator shares.

Masked-out frames are treated as absent, not as zeros: their values are replaced before any
arithmetic (so NaN or inf padding cannot leak through a `0 * x` product), and the sequence
modules first `compact` the valid frames to the front, so a clip's output depends only on its
valid frames, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from temporal.registry import TemporalError, parse_hparams, register


def check_inputs(frames: torch.Tensor, mask: torch.Tensor, dim: int) -> None:
    """Refuse malformed input, and any clip without a valid frame (never pool nothing into a zero vector)."""
    if frames.dim() != 3:
        raise TemporalError(f"frames must be (B, T, D), got shape {tuple(frames.shape)}")
    if frames.shape[-1] != dim:
        raise TemporalError(f"frames have D={frames.shape[-1]} but the temporal module expects D={dim}")
    if not frames.is_floating_point():
        raise TemporalError(f"frames must be a float tensor, got {frames.dtype}")
    if mask.dtype != torch.bool:
        raise TemporalError(f"mask must be a bool tensor (True = valid frame), got {mask.dtype}")
    if tuple(mask.shape) != tuple(frames.shape[:2]):
        raise TemporalError(f"mask shape {tuple(mask.shape)} does not match frames (B, T) = {tuple(frames.shape[:2])}")
    empty = ~mask.any(dim=1)  # (B,)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise TemporalError(f"clip rows {rows} have no valid frame (mask all False); refusing to aggregate nothing")


def zero_padding(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`frames` with every masked-out vector replaced by zeros, whatever it held (NaN included)."""
    return torch.where(mask.unsqueeze(-1), frames, torch.zeros_like(frames))  # (B, T, D)


def compact(frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's valid frames to the front, in order, and drop all-padding columns.

    Returns frames (B, L, D) with zeros after each row's valid prefix, and the prefix mask (B, L),
    where L is the largest number of valid frames in the batch.  Rows must each have >= 1 valid frame.
    """
    lengths = mask.sum(dim=1)  # (B,)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, T) valid indices first
    frames = torch.gather(frames, 1, order.unsqueeze(-1).expand_as(frames))  # (B, T, D)
    L = int(lengths.max())
    positions = torch.arange(L, device=mask.device)  # (L,)
    mask = positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, L)
    return zero_padding(frames[:, :L], mask), mask  # (B, L, D), (B, L)



def prepare_sequence(frames: torch.Tensor, mask: torch.Tensor, dim: int, dtype: torch.dtype):
    """The common start of a sequence module's forward: validate, cast, and move each row's valid
    frames to the front.  Returns (frames (B, L, D), mask (B, L)), or None for an empty batch."""
    check_inputs(frames, mask, dim)
    if frames.shape[0] == 0:
        return None
    return compact(frames.to(dtype), mask)  # (B, L, D), (B, L) valid prefix

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions of each row: (B, T, D), (B, T) -> (B, D)."""
    total = zero_padding(x, mask).sum(dim=1)  # (B, D)
    count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(x.dtype)  # (B, 1)
    return total / count  # (B, D)


@dataclass(frozen=True)
class MeanConfig:
    """meanP has no hyper-parameters."""


@register("mean")
class MeanPool(nn.Module):
    """Masked mean of the valid frames, L2-normalised.  No parameters, order-invariant."""

    name: str  # set by @register

    def __init__(self, dim: int, **hparams):
        super().__init__()
        self.dim = dim
        self.hparams = parse_hparams(MeanConfig, self.name, hparams)

    @property
    def config(self) -> dict:
        return {"name": self.name, "dim": self.dim, "hparams": {}}

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_inputs(frames, mask, self.dim)
        if frames.shape[0] == 0:
            return frames.new_zeros(0, self.dim)  # (0, D)
        pooled = masked_mean(frames, mask)  # (B, D)
        return F.normalize(pooled, dim=-1)  # (B, D)
