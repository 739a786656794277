"""temporal/: the aggregator contract, CLIP init, checkpoints, and a tiny training sanity check."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F

import temporal
from temporal import TemporalError

D = 64
ALL = ["mean", "seq_lstm", "seq_transformer"]


def _module(name: str, dim: int = D, **hparams):
    torch.manual_seed(0)
    return temporal.build(name, dim, **hparams).eval()


def _random_padded_batch(gen: torch.Generator, lengths: list[int], T: int, dim: int = D):
    """Frames (B,T,D) with valid frames scattered at random positions and garbage padding."""
    B = len(lengths)
    frames = torch.randn(B, T, dim, generator=gen) * 1e3  # (B, T, D) huge garbage
    frames[0, :, 0] = float("nan")  # NaN padding must not leak either
    mask = torch.zeros(B, T, dtype=torch.bool)  # (B, T)
    valid = []
    for b, n in enumerate(lengths):
        pos = torch.randperm(T, generator=gen)[:n].sort().values  # (n,) increasing positions
        clip = F.normalize(torch.randn(n, dim, generator=gen), dim=-1)  # (n, D)
        frames[b, pos] = clip
        mask[b, pos] = True
        valid.append(clip)
    return frames, mask, valid


# ---------------------------------------------------------------- registry

def test_names_and_build():
    assert temporal.names() == ALL
    for name in ALL:
        module = temporal.build(name, D)
        assert module.name == name
        assert module.config["name"] == name and module.config["dim"] == D
        assert isinstance(module.config["hparams"], dict)
        json.dumps(module.config)  # the config must be JSON-able as is


def test_build_refuses_unknown_name_and_hparam():
    with pytest.raises(TemporalError, match="unknown temporal module"):
        temporal.build("lstm_transformer", D)
    with pytest.raises(TemporalError, match="no hparam"):
        temporal.build("seq_transformer", D, layer=2)
    with pytest.raises(TemporalError):
        temporal.build("mean", 0)
    assert issubclass(TemporalError, ValueError)


# ---------------------------------------------------------------- the contract

@pytest.mark.parametrize("name", ALL)
def test_padding_never_changes_output(name):
    """Each row of a padded batch equals that clip aggregated alone, without any padding."""
    module = _module(name)
    gen = torch.Generator().manual_seed(1)
    frames, mask, valid = _random_padded_batch(gen, lengths=[3, 1, 7, 5], T=9)
    with torch.no_grad():
        batched = module(frames, mask)  # (B, D)
        for b, clip in enumerate(valid):
            alone = module(clip.unsqueeze(0), torch.ones(1, len(clip), dtype=torch.bool))  # (1, D)
            torch.testing.assert_close(batched[b], alone[0], atol=2e-5, rtol=1e-4)
    assert torch.isfinite(batched).all()


@pytest.mark.parametrize("name", ALL)
def test_output_is_normalised_and_text_free(name):
    module = _module(name)
    gen = torch.Generator().manual_seed(2)
    frames, mask, _ = _random_padded_batch(gen, lengths=[2, 6, 4], T=6)
    with torch.no_grad():
        out = module(frames, mask)
    assert out.shape == (3, D)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


@pytest.mark.parametrize("name", ALL)
def test_single_frame(name):
    module = _module(name)
    frame = F.normalize(torch.randn(2, 1, D), dim=-1)  # (2, 1, D)
    with torch.no_grad():
        out = module(frame, torch.ones(2, 1, dtype=torch.bool))
    assert out.shape == (2, D) and torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    if name == "mean":
        torch.testing.assert_close(out, frame[:, 0])


@pytest.mark.parametrize("name", ALL)
def test_all_padded_row_refused(name):
    module = _module(name)
    frames = torch.randn(2, 4, D)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    with pytest.raises(TemporalError, match=r"rows \[1\]"):
        module(frames, mask)
    with pytest.raises(TemporalError):
        module(torch.randn(1, 0, D), torch.zeros(1, 0, dtype=torch.bool))


@pytest.mark.parametrize("name", ALL)
def test_malformed_input_refused(name):
    module = _module(name)
    with pytest.raises(TemporalError, match="bool"):
        module(torch.randn(1, 3, D), torch.ones(1, 3))
    with pytest.raises(TemporalError, match="D="):
        module(torch.randn(1, 3, D + 1), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(TemporalError, match="mask shape"):
        module(torch.randn(1, 3, D), torch.ones(1, 4, dtype=torch.bool))


def test_mean_is_order_invariant():
    module = _module("mean")
    frames = torch.randn(2, 6, D)
    mask = torch.ones(2, 6, dtype=torch.bool)
    perm = torch.randperm(6)
    torch.testing.assert_close(module(frames, mask), module(frames[:, perm], mask))


@pytest.mark.parametrize("name", ["seq_transformer", "seq_lstm"])
def test_sequence_modules_see_order(name):
    module = _module(name)
    frames = F.normalize(torch.randn(1, 6, D), dim=-1)
    mask = torch.ones(1, 6, dtype=torch.bool)
    with torch.no_grad():
        forward = module(frames, mask)
        backward = module(frames.flip(1), mask)
    assert (forward - backward).abs().max() > 1e-4


def test_seq_transformer_position_limit():
    module = _module("seq_transformer", max_positions=4, layers=1)
    with pytest.raises(TemporalError, match="positions"):
        module(torch.randn(1, 5, D), torch.ones(1, 5, dtype=torch.bool))
    # padding beyond the limit is fine: only valid frames take positions
    mask = torch.tensor([[True, False, True, False, True, False, False]])
    out = module(torch.randn(1, 7, D), mask)
    assert out.shape == (1, D)


def test_seq_transformer_heads_default_and_check():
    assert temporal.build("seq_transformer", 512).config["hparams"]["heads"] == 8
    assert temporal.build("seq_transformer", 32).config["hparams"]["heads"] == 1
    with pytest.raises(TemporalError, match="divisible"):
        temporal.build("seq_transformer", 66, heads=4)


def test_info_nce_is_symmetric_cross_entropy():
    gen = torch.Generator().manual_seed(3)
    video = F.normalize(torch.randn(5, D, generator=gen), dim=-1)
    text = F.normalize(torch.randn(5, D, generator=gen), dim=-1)
    scale = torch.tensor(30.0)
    logits = (scale * video @ text.T).double()  # (5, 5)
    by_hand = 0.0
    for i in range(5):  # -log softmax of the diagonal, both directions
        by_hand -= (logits[i, i] - torch.logsumexp(logits[i], 0)) / 10
        by_hand -= (logits[i, i] - torch.logsumexp(logits[:, i], 0)) / 10
    torch.testing.assert_close(temporal.info_nce(video, text, scale).double(), by_hand)
    assert temporal.info_nce(text, text, scale) < temporal.info_nce(video, text, scale)


# ---------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("name", ALL)
def test_save_load_roundtrip(name, tmp_path):
    module = _module(name, layers=2) if name == "seq_transformer" else _module(name)
    temporal.save(module, tmp_path / "ckpt", clip_model="ViT-B-32/openai")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["clip_model"] == "ViT-B-32/openai" and config["format_version"] == 1
    loaded = temporal.load(tmp_path / "ckpt", expect_clip_model="ViT-B-32/openai")
    assert loaded.config == module.config
    frames, mask, _ = _random_padded_batch(torch.Generator().manual_seed(4), lengths=[3, 5], T=6)
    with torch.no_grad():
        assert torch.equal(module(frames, mask), loaded(frames, mask))
    assert temporal.load(tmp_path / "ckpt").config == module.config  # no expectation: no check


def test_load_refuses_other_clip_model(tmp_path):
    temporal.save(_module("seq_lstm"), tmp_path, clip_model="ViT-B-32/openai")
    with pytest.raises(TemporalError, match="ViT-L-14"):
        temporal.load(tmp_path, expect_clip_model="ViT-L-14/openai")


def test_load_refuses_bad_dirs(tmp_path):
    with pytest.raises(TemporalError, match="not a directory"):
        temporal.load(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TemporalError, match="not a directory"):
        temporal.load(tmp_path / "file")
    with pytest.raises(TemporalError, match="config.json"):
        temporal.load(tmp_path)
    temporal.save(_module("seq_transformer", layers=1), tmp_path / "t", clip_model="m")
    (tmp_path / "t" / "weights.safetensors").unlink()
    with pytest.raises(TemporalError, match="weights.safetensors"):
        temporal.load(tmp_path / "t")
    (tmp_path / "t" / "config.json").write_text("{not json")
    with pytest.raises(TemporalError, match="JSON"):
        temporal.load(tmp_path / "t")


def test_load_refuses_weights_of_another_shape(tmp_path):
    temporal.save(_module("seq_lstm"), tmp_path / "a", clip_model="m")
    temporal.save(_module("seq_lstm", dim=32), tmp_path / "b", clip_model="m")
    (tmp_path / "b" / "weights.safetensors").replace(tmp_path / "a" / "weights.safetensors")
    with pytest.raises(TemporalError, match="wrong shape"):
        temporal.load(tmp_path / "a")


def test_fingerprint_is_stable_and_content_based(tmp_path):
    module = _module("seq_transformer", layers=1)
    temporal.save(module, tmp_path / "a", clip_model="m")
    temporal.save(module, tmp_path / "b", clip_model="m")
    fp = temporal.fingerprint(tmp_path / "a")
    assert len(fp) == 64 and fp == temporal.fingerprint(tmp_path / "a") == temporal.fingerprint(tmp_path / "b")
    with torch.no_grad():
        module.frame_position_embeddings.weight[0, 0] += 1.0
    temporal.save(module, tmp_path / "c", clip_model="m")
    temporal.save(_module("seq_transformer", layers=1), tmp_path / "d", clip_model="other")
    assert temporal.fingerprint(tmp_path / "c") != fp
    assert temporal.fingerprint(tmp_path / "d") != fp
    temporal.save(_module("mean"), tmp_path / "m", clip_model="m")
    assert temporal.fingerprint(tmp_path / "m") == temporal.fingerprint(tmp_path / "m")


# ---------------------------------------------------------------- CLIP init

TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A real open_clip CLIP with random weights; the second one has LayerScale in its text blocks."""
    open_clip = pytest.importorskip("open_clip")
    folder = tmp_path_factory.mktemp("open_clip_configs")
    layer_scale = json.loads(json.dumps(TINY_CLIP))
    layer_scale["text_cfg"]["ls_init_value"] = 0.5
    for stem, cfg in (("vidclip-test-tiny", TINY_CLIP), ("vidclip-test-tiny-ls", layer_scale)):
        (folder / f"{stem}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(folder / f"{stem}.json")
    torch.manual_seed(5)
    plain = open_clip.create_model("vidclip-test-tiny", pretrained=None).eval()
    scaled = open_clip.create_model("vidclip-test-tiny-ls", pretrained=None).eval()
    with torch.no_grad():  # LayerScale gammas and biases all start constant/zero: make them informative
        for block in scaled.transformer.resblocks:
            block.ls_1.gamma.uniform_(0.1, 2.0)
            block.ls_2.gamma.uniform_(0.1, 2.0)
            block.attn.out_proj.bias.normal_()
            block.mlp.c_proj.bias.normal_()
    return plain, scaled


def test_init_from_clip_copies_text_tower(tiny_clip, caplog):
    clip, _ = tiny_clip
    module = _module("seq_transformer", layers=2, activation="gelu")
    with caplog.at_level(logging.WARNING, logger="temporal"):
        assert temporal.init_from_clip(module, clip) is True
    assert not caplog.records  # widths, heads and activation all match: nothing to warn about
    torch.testing.assert_close(module.frame_position_embeddings.weight, clip.positional_embedding[:77],
                               rtol=0, atol=0)
    for ours, theirs in zip(module.resblocks, clip.transformer.resblocks):
        source = theirs.state_dict()
        for key, value in ours.state_dict().items():
            assert torch.equal(value, source[key]), key


@pytest.mark.parametrize("which", [0, 1])
def test_init_from_clip_blocks_compute_what_clip_computes(tiny_clip, which):
    """Same function as the CLIP text block without its causal mask (LayerScale folded in exactly)."""
    clip = tiny_clip[which]
    module = _module("seq_transformer", layers=2, activation="gelu")
    assert temporal.init_from_clip(module, clip)
    x = torch.randn(3, 5, D)  # (B, L, D)
    no_padding = torch.zeros(3, 5, dtype=torch.bool)
    with torch.no_grad():
        for ours, theirs in zip(module.resblocks, clip.transformer.resblocks):
            torch.testing.assert_close(ours(x, no_padding), theirs(x), atol=1e-5, rtol=1e-5)


def test_init_from_clip_partial_and_activation_warnings(tiny_clip, caplog):
    clip, _ = tiny_clip
    module = _module("seq_transformer", layers=3, max_positions=100)  # quick_gelu vs the tower's GELU
    before = module.resblocks[2].mlp.c_fc.weight.clone()
    with caplog.at_level(logging.WARNING, logger="temporal"):
        assert temporal.init_from_clip(module, clip) is True
    text = caplog.text
    assert "2 blocks" in text and "77 positions" in text and "activation='gelu'" in text
    assert torch.equal(module.resblocks[2].mlp.c_fc.weight, before)  # no CLIP block 2: untouched
    assert torch.equal(module.frame_position_embeddings.weight[:77], clip.positional_embedding)


def test_init_from_clip_width_mismatch_falls_back(tiny_clip, caplog):
    clip, _ = tiny_clip
    module = _module("seq_transformer", dim=32, layers=1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="temporal"):
        assert temporal.init_from_clip(module, clip) is False
    assert "random init" in caplog.text and "width 64" in caplog.text
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


def test_init_from_clip_other_modules_fall_back(tiny_clip, caplog):
    clip, _ = tiny_clip
    with caplog.at_level(logging.WARNING, logger="temporal"):
        assert temporal.init_from_clip(_module("mean"), clip) is False
        assert temporal.init_from_clip(_module("seq_lstm"), clip) is False
        assert temporal.init_from_clip(_module("seq_transformer"), torch.nn.Linear(2, 2)) is False
    assert caplog.text.count("random init") == 3


# ---------------------------------------------------------------- training sanity

def _order_task(dim: int = 32):
    """Two clips with the same frames in opposite orders, "A A B B" vs "B B A A", and a text for each."""
    gen = torch.Generator().manual_seed(6)
    a, b = F.normalize(torch.randn(2, dim, generator=gen), dim=-1)  # (D,), (D,)
    frames = torch.stack([torch.stack([a, a, b, b]), torch.stack([b, b, a, a])])  # (2, 4, D)
    texts = F.normalize(torch.randn(2, dim, generator=gen), dim=-1)  # (2, D)
    return frames, torch.ones(2, 4, dtype=torch.bool), texts


def test_seq_transformer_learns_order_mean_cannot():
    frames, mask, texts = _order_task()
    scale = torch.tensor(20.0)

    mean_out = _module("mean", dim=32)(frames, mask)
    torch.testing.assert_close(mean_out[0], mean_out[1])  # AB and BA are the same vector
    # identical video vectors give t2v cross-entropy exactly ln 2, so mean's loss is >= ln 2
    assert temporal.info_nce(mean_out, texts, scale) >= math.log(2) - 1e-6

    model = _module("seq_transformer", dim=32, layers=1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(7)
    losses = []
    for _ in range(60):
        noisy = frames + 0.05 * torch.randn(frames.shape, generator=gen)  # (2, 4, D)
        loss = temporal.info_nce(model(noisy, mask), texts, scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    start, end = losses[0], sum(losses[-10:]) / 10
    assert start > 0.6  # random init barely separates the orders
    assert end < 0.25 * start and end < 0.5 * math.log(2)  # well below anything mean can reach
    with torch.no_grad():
        out = model.eval()(frames, mask)  # (2, D)
    assert (out @ texts.T).argmax(dim=1).tolist() == [0, 1]
