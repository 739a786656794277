"""Pixel parity on the real ingest path: the model inputs vidclip builds from frames its decoder
resized at decode time, against open_clip's own PIL preprocess of the same frames decoded at full
size (benchmarks/parity.py measures the full table; docs/parity.md)."""

from __future__ import annotations

import pytest

from benchmarks.parity import _decode, _model_inputs, _pil_inputs, compare
from conftest import TINY
from vidclip.config import ModelConfig
from vidclip.ingest.decoder import DECORD, PYAV
from vidclip.model.encoder import Encoder
from vidclip.samples.synth import VideoSpec, write_natural_video

FULL = lambda w, h: (w, h)  # noqa: E731  decode without resizing

# Twice the model's size at decode time, then the tensor path's antialiased resize: 42-56 dB from
# 240p to 4K (docs/parity.md); the decoder's own scaler straight to the model's size was 29-38 dB.
# A wrong crop, rotation or normalisation falls far below (checked below).
MIN_PSNR_DB = 40.0


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    return {name: write_natural_video(root / f"{name}.mp4", VideoSpec(codec="h264", width=w, height=h, duration_s=3.0,
                                                                      fps=5.0, seed=i, crf=12, rotation=rot))
            for i, (name, w, h, rot) in enumerate([("360p", 640, 360, 0), ("100x700", 100, 700, 0),
                                                    ("portrait_rot90", 360, 640, 90)])}


@pytest.mark.parametrize("decoder", [DECORD, PYAV])
def test_ingest_path_model_inputs_match_open_clip_pixels(clips, decoder):
    enc = Encoder.load(TINY)
    for name, path in clips.items():
        ref_frames, _ = _decode(path, FULL, (PYAV,))
        ref = _pil_inputs(enc, ref_frames)  # (n, 3, S, S)
        frames, _ = _decode(path, enc.decode_size, (decoder,))
        ours = _model_inputs(enc, frames)
        assert ours.shape == ref.shape
        got = compare(enc, ours, ref)
        assert got["psnr_db"] >= MIN_PSNR_DB, (name, decoder, got)
        # the measure discriminates: the same frames one sample off, or upside down, are far apart
        assert compare(enc, ours.flip(-2), ref)["psnr_db"] < 25
        assert compare(enc, ours.roll(3, dims=-1), ref)["psnr_db"] < MIN_PSNR_DB - 3


def test_a_models_own_preprocess_config_is_followed_at_the_pixel_level(clips, tmp_path, monkeypatch):
    """A pretrained tag whose preprocessing is resize_mode="squash" with non-CLIP mean/std (as
    open_clip's registry carries for SigLIP-style models): ingest's inputs follow that model's own
    transform, not ViT-B-32's defaults."""
    from open_clip.pretrained import _PRETRAINED
    from safetensors.torch import save_file

    default = Encoder.load(TINY)
    weights_file = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in default.model.state_dict().items()}, str(weights_file))
    tag = {"file": str(weights_file), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
           "interpolation": "bilinear", "resize_mode": "squash"}
    monkeypatch.setitem(_PRETRAINED, "vidclip-tiny", {"squashtag": tag})
    enc = Encoder.load(ModelConfig(TINY.name, "squashtag", config_path=TINY.config_path))
    video = clips["360p"]
    assert enc.decode_size(640, 360) == (128, 128)  # squash: twice the model's size, aspect not kept
    ref_frames, _ = _decode(video, FULL, (PYAV,))
    ref = _pil_inputs(enc, ref_frames)  # open_clip's transform for this model
    frames, _ = _decode(video, enc.decode_size, (PYAV,))
    ours = _model_inputs(enc, frames)
    assert compare(enc, ours, ref)["psnr_db"] >= MIN_PSNR_DB
    # the default model's inputs (CLIP mean/std, shortest side + crop) for the same frames are far off
    other = _model_inputs(default, _decode(video, default.decode_size, (PYAV,))[0])
    assert compare(enc, other, ref)["psnr_db"] < 20


def test_frames_decord_would_shrink_too_far_go_to_pyav_first(clips):
    """decord's scaler drifts from open_clip's pixels beyond a 3.5x shrink (4K -> 448p: 38.9 dB,
    PyAV's bicubic 43.8 dB at the same CPU), so such frames are decoded by PyAV first."""
    from vidclip.config import SamplingConfig
    from vidclip.ingest.decoder import DECORD_MAX_SHRINK, preferred_decoders
    from vidclip.ingest.probe import probe
    from vidclip.ingest.sampling import plan_samples

    pr = probe(str(clips["360p"]), 8192 * 8192)
    # every frame (a sparse H.264 plan goes to PyAV first anyway: test_decoder_modes)
    plan = plan_samples(pr.timeline, pr.info.duration_s, SamplingConfig(fps=5.0), keyframes=pr.keyframes)
    assert preferred_decoders(plan, pr, (320, 180)) == (DECORD, PYAV)  # a 2x shrink
    assert preferred_decoders(plan, pr, (128, 72)) == (PYAV, DECORD)  # a 5x shrink
    assert 360 / 128 < DECORD_MAX_SHRINK < 360 / 72
