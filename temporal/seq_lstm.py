"""CLIP4Clip's seqLSTM: a unidirectional LSTM over the valid frames, plus the input residual.

    x   = lstm(packed valid frames) + frames
    out = normalize(masked_mean(normalize(x)))

Valid frames are compacted to the front first (see `temporal.mean.compact`), so any mask works
and padding never changes the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from temporal.mean import masked_mean, prepare_sequence
from temporal.registry import TemporalError, check_frames_input, parse_hparams, register


@dataclass(frozen=True)
class LSTMConfig:
    layers: int = 1  # CLIP4Clip uses one layer
    frames: str = "normalized"  # "raw": unnormalised image features, as CLIP4Clip feeds them

    def __post_init__(self):
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 1:
            raise TemporalError(f"seq_lstm layers must be a positive int, got {self.layers!r}")
        check_frames_input("seq_lstm", self.frames)


@register("seq_lstm")
class SeqLSTM(nn.Module):
    name: str  # set by @register

    def __init__(self, dim: int, **hparams):
        super().__init__()
        self.hparams = parse_hparams(LSTMConfig, self.name, hparams)
        self.dim = dim
        self.lstm = nn.LSTM(dim, dim, num_layers=self.hparams.layers, batch_first=True)

    @property
    def config(self) -> dict:
        return {"name": self.name, "dim": self.dim, "hparams": asdict(self.hparams)}

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        prepared = prepare_sequence(frames, mask, self.dim, self.lstm.weight_ih_l0.dtype)
        if prepared is None:
            return frames.new_zeros(0, self.dim)  # (0, D)
        frames, mask = prepared  # (B, L, D), (B, L) valid prefix
        lengths = mask.sum(dim=1).cpu()  # (B,)
        packed = pack_padded_sequence(frames, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=frames.shape[1])  # (B, L, D)
        x = out + frames  # (B, L, D)
        x = F.normalize(x, dim=-1)  # (B, L, D)
        pooled = masked_mean(x, mask)  # (B, D)
        return F.normalize(pooled, dim=-1)  # (B, D)
