"""Symmetric InfoNCE over a batch of matched (video, text) pairs, as CLIP / CLIP4Clip train."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(video_vecs: torch.Tensor, text_vecs: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the video->text and text->video cross-entropies; row i of each input is a pair.

    video_vecs (B, D) and text_vecs (B, D) are assumed L2-normalised; logit_scale is the
    multiplier itself (CLIP's `logit_scale.exp()`), a scalar tensor.  Returns a scalar.
    """
    logits = logit_scale * video_vecs @ text_vecs.t()  # (B, B) video x text
    target = torch.arange(logits.shape[0], device=logits.device)  # (B,)
    v2t = F.cross_entropy(logits, target)  # ()
    t2v = F.cross_entropy(logits.t(), target)  # ()
    return (v2t + t2v) / 2
