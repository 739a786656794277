"""CLIP4Clip checkpoints give CLIP4Clip's video vectors.

The reference below is written from CLIP4Clip's published formulas (the paper, and the behaviour
of its public code), not from vidclip's modules: TF-style LayerNorm with eps 1e-12 inside the
square root, attention with an additive -1e6 mask on padded keys, QuickGELU MLPs, the image
tower's unnormalised features as input, the input residual, then normalise -> masked mean ->
normalise.  The LSTM is written out as its gate equations.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import vidclip
from conftest import TINY_CONFIG
from temporal import wants_raw_frames
from temporal.clip4clip import build_module
from vidclip.cli import main
from vidclip.samples.synth import VideoSpec, write_video

D = 64  # the tiny CLIP's embedding width
HEADS = D // 64 or 1


# ----------------------------------------------------------------------------- the reference
def _tf_layernorm(x, w, b, eps=1e-12):
    u = x.mean(-1, keepdim=True)
    s = (x - u).pow(2).mean(-1, keepdim=True)
    return w * (x - u) / torch.sqrt(s + eps) + b


def _attention(x, sd, p, valid):
    B, T, _ = x.shape
    qkv = x @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]  # (B, T, 3D)
    q, k, v = qkv.split(D, dim=-1)
    hd = D // HEADS
    q, k, v = (z.reshape(B, T, HEADS, hd).transpose(1, 2) for z in (q, k, v))  # (B, H, T, hd)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # (B, H, T, T)
    scores = scores + ((1.0 - valid.float()) * -1e6)[:, None, None, :]
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
    return out @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]


def _pool(x, valid):
    x = x / x.norm(dim=-1, keepdim=True)
    m = valid.float().unsqueeze(-1)
    pooled = (x * m).sum(1) / m.sum(1)
    return pooled / pooled.norm(dim=-1, keepdim=True)


def reference(header: str, sd: dict, raw: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """CLIP4Clip's video vector for raw features (B, T, D) whose valid frames are a prefix."""
    raw = raw.double()
    sd = {k: v.double() for k, v in sd.items()}
    if header == "meanP":
        return _pool(raw, valid)
    if header == "seqTransf":
        T = raw.shape[1]
        x = raw + sd["frame_position_embeddings.weight"][:T]
        layers = len({k.split(".")[2] for k in sd if k.startswith("transformerClip.resblocks.")})
        for i in range(layers):
            p = f"transformerClip.resblocks.{i}."
            x = x + _attention(_tf_layernorm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]), sd, p, valid)
            h = _tf_layernorm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"]) @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
            h = h * torch.sigmoid(1.702 * h)
            x = x + h @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
        return _pool(x + raw, valid)
    # seqLSTM: one layer, gates in (input, forget, cell, output) order, over each row's valid prefix
    B, T, _ = raw.shape
    out = raw.clone()
    for b in range(B):
        h = torch.zeros(D, dtype=raw.dtype)
        c = torch.zeros(D, dtype=raw.dtype)
        for t in range(int(valid[b].sum())):
            g = (sd["lstm_visual.weight_ih_l0"] @ raw[b, t] + sd["lstm_visual.bias_ih_l0"]
                 + sd["lstm_visual.weight_hh_l0"] @ h + sd["lstm_visual.bias_hh_l0"])
            i, f, gg, o = g.split(D)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[b, t] = h
    return _pool(out + raw, valid)


def clip4clip_temporal(header: str, seed: int = 0, layers: int = 2, positions: int = 77) -> dict:
    """Random temporal weights under CLIP4Clip's key names (not through vidclip's modules)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=0.05: torch.randn(*shape, generator=g) * s  # noqa: E731
    sd = {}
    if header in ("seqLSTM", "seqTransf"):
        sd["frame_position_embeddings.weight"] = r(positions, D, s=0.02)
    if header == "seqTransf":
        for i in range(layers):
            p = f"transformerClip.resblocks.{i}."
            sd.update({p + "attn.in_proj_weight": r(3 * D, D), p + "attn.in_proj_bias": r(3 * D),
                       p + "attn.out_proj.weight": r(D, D), p + "attn.out_proj.bias": r(D),
                       p + "ln_1.weight": 1 + r(D), p + "ln_1.bias": r(D), p + "ln_2.weight": 1 + r(D), p + "ln_2.bias": r(D),
                       p + "mlp.c_fc.weight": r(4 * D, D), p + "mlp.c_fc.bias": r(4 * D),
                       p + "mlp.c_proj.weight": r(D, 4 * D), p + "mlp.c_proj.bias": r(D)})
    if header == "seqLSTM":
        sd.update({"lstm_visual.weight_ih_l0": r(4 * D, D), "lstm_visual.weight_hh_l0": r(4 * D, D),
                   "lstm_visual.bias_ih_l0": r(4 * D), "lstm_visual.bias_hh_l0": r(4 * D)})
    return sd


def _raw_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(3, 12, D, generator=g) * 0.4 + torch.randn(D, generator=g)  # a shared direction, norms ~10
    lengths = torch.tensor([12, 5, 1])
    valid = torch.arange(12)[None, :] < lengths[:, None]  # (B, T) valid prefix
    return raw, valid


# ----------------------------------------------------------------------------- module parity
@pytest.mark.parametrize("header", ["meanP", "seqLSTM", "seqTransf"])
def test_imported_modules_give_clip4clips_vectors(header):
    sd = clip4clip_temporal(header)
    module = build_module(sd, D)
    raw, valid = _raw_batch()
    unit = raw / raw.norm(dim=-1, keepdim=True)
    fed = raw if wants_raw_frames(module) else unit  # what vidclip feeds it (ingest.video.module_frames)
    assert wants_raw_frames(module) == (header != "meanP")
    with torch.inference_mode():
        got = module(fed, valid).double()  # (B, D)
    want = reference(header, sd, raw, valid)
    assert (got - want).abs().max().item() <= 1e-5
    if header != "meanP":
        # the same module fed unit vectors (vidclip's own convention) is NOT CLIP4Clip: the raw input matters
        with torch.inference_mode():
            off = module(unit, valid).double()
        assert (off - want).abs().max().item() > 1e-3
    if header == "seqTransf":
        assert module.hparams.ln_eps == 1e-12 and module.hparams.frames == "raw"


def test_a_checkpoint_that_does_not_map_is_one_line(tmp_path, capsys):
    sd = {f"clip.{k}": v for k, v in _tiny_clip_state().items()}
    sd.update(clip4clip_temporal("seqTransf"))
    bad = dict(sd, **{"transformerClip.resblocks.0.extra.weight": torch.zeros(2)})
    torch.save(bad, tmp_path / "bad.bin")
    assert main(["import-clip4clip", str(tmp_path / "bad.bin"), "--out", str(tmp_path / "o1"),
                 "--model", "vidclip-tiny", "--model-config", TINY_CONFIG]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "transformerClip.resblocks.0.extra.weight" in err

    missing = {k: v for k, v in sd.items() if k != "transformerClip.resblocks.1.ln_2.bias"}
    torch.save(missing, tmp_path / "missing.bin")
    assert main(["import-clip4clip", str(tmp_path / "missing.bin"), "--out", str(tmp_path / "o2"),
                 "--model", "vidclip-tiny", "--model-config", TINY_CONFIG]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resblocks.1.ln_2.bias" in err

    tight = dict(sd, **{"cross.encoder.layer.0.weight": torch.zeros(2)})
    torch.save(tight, tmp_path / "tight.bin")
    assert main(["import-clip4clip", str(tmp_path / "tight.bin"), "--out", str(tmp_path / "o3")]) == 2
    assert "tightTransf" in capsys.readouterr().err

    torch.save({"visual.conv1.weight": torch.zeros(2)}, tmp_path / "plain.bin")
    assert main(["import-clip4clip", str(tmp_path / "plain.bin"), "--out", str(tmp_path / "o4")]) == 2
    assert "not a CLIP4Clip checkpoint" in capsys.readouterr().err


def _tiny_clip_state() -> dict:
    import open_clip

    open_clip.add_model_config(TINY_CONFIG)
    torch.manual_seed(5)
    model = open_clip.create_model("vidclip-tiny", pretrained=None)
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- end to end
def _clips_and_raw_frames(lib):
    """Per clip of every ok video: (stored clip vector, raw frame features (n, D) of its frames)."""
    store = lib.store
    frames = store.table("frames").to_arrow()
    clips = store.table(store.segments["clip"]).to_arrow().to_pylist()
    vid = np.asarray(frames.column("video_id").to_pylist())
    t = frames.column("t").to_numpy()
    unit = np.stack(frames.column("vector").to_numpy(zero_copy_only=False))  # (N, D)
    norm = frames.column("norm").to_numpy()  # (N,)
    out = []
    for c in clips:
        sel = np.flatnonzero((vid == c["video_id"]) & (t >= c["start_s"]) & (t < c["end_s"]))
        sel = sel[np.argsort(t[sel])]
        assert len(sel) == c["n_frames"]
        out.append((np.asarray(c["vector"]), unit[sel] * norm[sel, None], norm[sel]))
    return out


@pytest.mark.slow
def test_import_then_ingest_and_reindex_serve_clip4clip_vectors(tmp_path, capsys):
    """CLI end to end: import a seqTransf checkpoint, ingest real H.264 video with its CLIP weights,
    reindex with its temporal module (stored frames), then ingest another video (the module at
    ingest time): every clip vector is CLIP4Clip's for the same frames, to 1e-5."""
    temporal_sd = clip4clip_temporal("seqTransf", seed=3)
    ckpt = {f"clip.{k}": v for k, v in _tiny_clip_state().items()}
    ckpt.update(temporal_sd)
    torch.save(ckpt, tmp_path / "pytorch_model.bin.2")
    out = tmp_path / "imported"
    assert main(["import-clip4clip", str(tmp_path / "pytorch_model.bin.2"), "--out", str(out),
                 "--model", "vidclip-tiny", "--model-config", TINY_CONFIG, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sim_header"] == "seqTransf" and report["temporal"] == "seq_transformer"

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", VideoSpec(codec="h264", width=320, height=240, duration_s=5.0, seed=11, scene_seconds=1.0))
    db = str(tmp_path / "db")
    common = ["--db", db, "--model", "vidclip-tiny", "--model-config", TINY_CONFIG, "--pretrained", str(out / "clip.safetensors")]
    assert main(["ingest", str(videos / "a.mp4"), *common, "--local", "--fps", "2", "--clip-seconds", "2", "--json"]) == 0
    assert main(["reindex", "--db", db, "--temporal", str(out / "temporal"), "--json"]) == 0
    write_video(videos / "b.mp4", VideoSpec(codec="h264", width=256, height=144, duration_s=4.0, seed=12, scene_seconds=1.0))
    assert main(["ingest", str(videos / "b.mp4"), *common, "--local", "--json"]) == 0
    capsys.readouterr()

    lib = vidclip.open(db, create=False)
    assert lib.status()["videos"]["ok"] == 2
    rows = _clips_and_raw_frames(lib)
    assert len(rows) >= 4
    for stored, raw, norm in rows:
        assert not np.allclose(norm, 1.0)  # the image tower's own norms were kept, not unit norms
        x = torch.from_numpy(raw)[None]  # (1, n, D)
        want = reference("seqTransf", temporal_sd, x, torch.ones(1, x.shape[1], dtype=torch.bool))[0].numpy()
        assert np.abs(stored - want).max() <= 1e-5


@pytest.mark.slow
def test_a_store_from_before_frame_norms_keeps_ingesting_and_refuses_raw_modules_in_one_line(tmp_path, capsys):
    """Stores written before the frames table had its norm column: ingest goes on (rows written
    without it), mean reindexes, and a CLIP4Clip module is refused with one line, not garbage."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", VideoSpec(codec="h264", width=160, height=120, duration_s=3.0, seed=21))
    write_video(videos / "b.mp4", VideoSpec(codec="h264", width=160, height=120, duration_s=3.0, seed=22))
    db = str(tmp_path / "db")
    common = ["--db", db, "--model", "vidclip-tiny", "--model-config", TINY_CONFIG, "--pretrained", "none", "--local"]
    assert main(["ingest", str(videos / "a.mp4"), *common, "--json"]) == 0
    lib = vidclip.open(db, create=False)
    lib.store.table("frames").drop_columns(["norm"])  # as a store from before norms were kept
    assert main(["ingest", str(videos / "b.mp4"), *common, "--json"]) == 0
    assert vidclip.open(db, create=False).status()["videos"]["ok"] == 2
    assert main(["reindex", "--db", db, "--temporal", "mean", "--json"]) == 0

    module = build_module(clip4clip_temporal("seqTransf"), D)
    import temporal

    temporal.save(module, tmp_path / "c4c", clip_model="vidclip-tiny")
    capsys.readouterr()
    assert main(["reindex", "--db", db, "--temporal", str(tmp_path / "c4c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "without their norms" in err
