"""Decode-time frame geometry: the size a decoder should scale an upright frame to.

A small picklable object, so decode workers (sandbox children, Ray tasks) can size
frames for the model without building the model.  It follows open_clip's eval
resize (torchvision Resize semantics) for the model's preprocess config.

Decoders scale to OVERSAMPLE times the model's size (a frame no larger than that is decoded as
is), and the tensor preprocessing finishes the resize with its antialiased kernel.  A decoder's own
scaler taking a frame straight to the model's size is 29-38 dB from open_clip's PIL preprocess;
twice the size plus the tensor resize is 42-56 dB, for 1.0-1.15x the decode CPU (docs/parity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

OVERSAMPLE = 2


def oversampled(width: int, height: int, model_w: int, model_h: int, factor: int = OVERSAMPLE) -> tuple[int, int]:
    """(w, h) a decoder scales a width x height frame to, given the (model_w, model_h) the model's
    resize would give it: `factor` times that, or the frame's own size when it is no larger."""
    if factor * model_w >= width or factor * model_h >= height:
        return width, height
    return factor * model_w, factor * model_h


@dataclass(frozen=True)
class FrameGeometry:
    size: tuple[int, int]  # model input (h, w)
    resize_mode: str = "shortest"  # open_clip PreprocessCfg.resize_mode: shortest | longest | squash
    oversample: int = OVERSAMPLE

    @classmethod
    def of_model(cls, model) -> "FrameGeometry":
        from open_clip import get_model_preprocess_cfg

        cfg = get_model_preprocess_cfg(model)
        size = cfg["size"]
        hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return cls(size=hw, resize_mode=cfg.get("resize_mode", "shortest"))

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) for a decoder to scale an upright width x height frame to."""
        return oversampled(width, height, *self.model_size(width, height), self.oversample)

    def frame_bytes(self) -> int:
        """Bytes of one decoded 16:9 RGB frame: the unit memory budgets are counted in (a frame of
        another shape counts by its own bytes against them)."""
        w, h = self.decode_size(1920, 1080)
        return 3 * w * h

    def model_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) open_clip's eval resize gives an upright width x height frame (before its crop)."""
        th, tw = self.size
        if self.resize_mode == "squash":
            return tw, th
        if self.resize_mode == "longest":
            scale = min(th / height, tw / width)
            return max(1, int(width * scale)), max(1, int(height * scale))
        # shortest: torchvision Resize(int) -> short side = size, long side truncated
        s = th if th == tw else min(th, tw)
        if width <= height:
            return s, int(s * height / width)
        return int(s * width / height), s
