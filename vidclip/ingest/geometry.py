"""Decode-time frame geometry: the size a decoder should scale an upright frame to.

A small picklable object, so decode workers (sandbox children, Ray tasks) can size
frames for the model without building the model.  It follows open_clip's eval
resize (torchvision Resize semantics) for the model's preprocess config, so the
tensor preprocessing left after decoding is (nearly) a pure crop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameGeometry:
    size: tuple[int, int]  # model input (h, w)
    resize_mode: str = "shortest"  # open_clip PreprocessCfg.resize_mode: shortest | longest | squash

    @classmethod
    def of_model(cls, model) -> "FrameGeometry":
        from open_clip import get_model_preprocess_cfg

        cfg = get_model_preprocess_cfg(model)
        size = cfg["size"]
        hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return cls(size=hw, resize_mode=cfg.get("resize_mode", "shortest"))

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) for an upright width x height frame."""
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
