"""Training (vidclip.learn.training) and evaluation (vidclip.learn.evaluation) on stored frame vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import temporal
import vidclip
from conftest import LIBRARY_SPECS, SAMPLING, TINY
from benchmarks.order import OrderBenchmark, default_config, run
from vidclip.learn import captions
from vidclip.errors import InputError, StoreMismatchError
from vidclip.learn.evaluation import DSL_NOTE, Examples, evaluate_store, frame_window, gather, read_frames
from vidclip.learn.metrics import evaluate
from vidclip.ingest.sampling import select_for_clip
from vidclip.learn.training import TrainConfig, fit, split_by_video, train_store


@pytest.fixture(autouse=True)
def one_thread():
    """These modules are tiny: one intra-op thread is faster, and much faster on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the learning signal ----------------------------------------------------------------------------
def test_trained_seq_transformer_learns_temporal_order():
    """Captions that differ only in order: mean pooling cannot beat a coin flip between the two
    orders; the trained transformer (same fit() as `vidclip train`) must."""
    bench = OrderBenchmark(concepts=8, train_per_pair=4, seed=0)
    result = run(bench, default_config(bench, epochs=20))
    mean, trained = result["mean"], result["seq_transformer"]
    assert mean["order_accuracy"] < 70  # order-blind by construction
    assert trained["t2v"]["R1"] > mean["t2v"]["R1"] + 25, (mean["t2v"], trained["t2v"])
    assert trained["t2v"]["R1"] > 10 * result["chance_r1"]
    assert trained["order_accuracy"] > 85
    assert result["train"]["best_epoch"] > 0


def _toy_examples(n_videos=24, captions_per_video=2, T=6, D=16, seed=0) -> Examples:
    g = torch.Generator().manual_seed(seed)
    frames = torch.nn.functional.normalize(torch.randn(n_videos, T, D, generator=g), dim=-1)
    mask = torch.ones(n_videos, T, dtype=torch.bool)
    mask[::3, T - 2 :] = False  # some shorter units
    unit_of = torch.arange(n_videos).repeat_interleave(captions_per_video)
    text = torch.nn.functional.normalize(frames.mean(1)[unit_of] + 0.3 * torch.randn(len(unit_of), D, generator=g), dim=-1)
    return Examples(frames=frames, mask=mask, text=text, unit_of=unit_of, video_of=[f"v{i // 2}" for i in range(n_videos)])


def test_same_seed_gives_identical_weights_and_history():
    data = _toy_examples()
    config = TrainConfig(hparams=(("layers", 1),), epochs=3, batch_size=8, lr=1e-3, max_frames=6, seed=7)
    a, b = fit(data, config, progress=False), fit(data, config, progress=False)
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history == b.history and a.best_epoch == b.best_epoch
    c = fit(data, TrainConfig(**{**config.__dict__, "seed": 8}), progress=False)
    assert any(not torch.equal(sa[k], c.module.state_dict()[k]) for k in sa)
    assert [h["epoch"] for h in a.history] == [0, 1, 2, 3]  # 0 = before training


def test_validation_split_is_by_video_and_seeded():
    data = _toy_examples(n_videos=40)
    train, val = split_by_video(data, 0.25, seed=3)
    assert len(train) + len(val) == data.n_units and not set(train) & set(val)
    train_videos = {data.video_of[u] for u in train}
    val_videos = {data.video_of[u] for u in val}
    assert not train_videos & val_videos and len(val_videos) == 5  # 25% of 20 videos
    assert np.array_equal(split_by_video(data, 0.25, seed=3)[1], val)
    assert not np.array_equal(split_by_video(data, 0.25, seed=4)[1], val)
    assert len(split_by_video(data, 0.0, seed=3)[1]) == 0


def test_lstm_trains_too_and_tiny_validation_selects_by_loss():
    data = _toy_examples(n_videos=8)
    result = fit(data, TrainConfig(temporal="seq_lstm", epochs=2, batch_size=8, lr=1e-3, max_frames=6, val_fraction=0.25),
                 progress=False)
    assert result.select_by == "val_loss" and result.split["val"]["videos"] == 1
    assert result.module.name == "seq_lstm"


def test_config_and_data_refusals():
    with pytest.raises(InputError, match="--temporal"):
        TrainConfig(temporal="attention")
    with pytest.raises(InputError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)
    one = _toy_examples(n_videos=1, captions_per_video=1)
    with pytest.raises(InputError, match="at least 2 captions"):
        fit(one, TrainConfig(max_frames=6), progress=False)


# -- on a real store --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lib(tmp_path_factory, video_dir):
    lib = vidclip.open(tmp_path_factory.mktemp("train") / "db", model=TINY)
    report = lib.ingest([video_dir], SAMPLING, progress=False)
    assert report.ok == len(LIBRARY_SPECS)
    return lib


@pytest.fixture(scope="module")
def caption_file(tmp_path_factory):
    """Two captions per video (the first and last 2 s), named by file stem, name and subfolder path."""
    rows = []
    for name, spec in LIBRARY_SPECS.items():
        rows.append({"video": name.rsplit("/", 1)[-1].rsplit(".", 1)[0], "caption": f"the start of {name}", "start_s": 0, "end_s": 2})
        rows.append({"video": name.rsplit("/", 1)[-1], "caption": f"the end of {name}", "start_s": spec.duration_s - 2, "end_s": spec.duration_s})
        rows.append({"video": name.rsplit("/", 1)[-1], "caption": f"all of {name}"})
    path = tmp_path_factory.mktemp("caps") / "captions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_frame_window():
    t = np.array([0.2, 0.7, 1.2, 1.7, 2.2, 2.7])
    assert frame_window(t, None, None).tolist() == [0, 1, 2, 3, 4, 5]
    assert frame_window(t, 0.7, 2.2).tolist() == [1, 2, 3]
    assert frame_window(t, 0.7, 2.2, include_end=True).tolist() == [1, 2, 3, 4]
    assert frame_window(t, 1.3, 1.6).tolist() == [2]  # no frame inside: the one on screen at the start
    assert frame_window(t, 0.0, 0.1).tolist() == [0]


def test_gather_takes_the_span_frames_uniformly(lib, caption_file):
    matched = captions.load(caption_file, lib.store)
    text = torch.zeros(len(matched.pairs), 64)
    data = gather(lib.store, matched.pairs, text, max_frames=3)
    assert data.n_units == 3 * len(LIBRARY_SPECS) and data.n_captions == len(matched.pairs)
    stored = read_frames(lib.store, [p.video_id for p in matched.pairs])
    for i, pair in enumerate(matched.pairs):
        t, vecs = stored[pair.video_id]
        inside = np.flatnonzero((t >= pair.start_s) & (t < pair.end_s)) if pair.start_s is not None else np.arange(len(t))
        want = vecs[inside[select_for_clip(len(inside), 3)]]
        u = int(data.unit_of[i])
        assert int(data.mask[u].sum()) == len(want)
        np.testing.assert_array_equal(data.frames[u, : len(want)].numpy(), want)
        assert not data.frames[u, len(want) :].any()


def test_eval_reports_both_directions_and_labels_dsl(lib, caption_file):
    matched = captions.load(caption_file, lib.store)
    result = evaluate_store(lib, matched, "mean")
    assert set(result["t2v"]) == set(result["v2t"]) == {"R1", "R5", "R10", "MdR", "MnR"}
    assert set(result["dsl"]) == {"t2v", "v2t"} and result["dsl_note"] == DSL_NOTE and "offline" in DSL_NOTE
    assert result["captions"] == len(matched.pairs) and result["videos"] == 3 * len(LIBRARY_SPECS)
    assert result["temporal"] == {"name": "mean"}
    # the CLIP4Clip protocol by hand: each unit = mean of <= max_frames uniformly chosen frames of its span
    stored = read_frames(lib.store, [p.video_id for p in matched.pairs])
    units = list(dict.fromkeys(p.span for p in matched.pairs))
    vecs = []
    for vid, start, end in units:
        t, v = stored[vid]
        pos = frame_window(t, start, end)
        m = v[pos[select_for_clip(len(pos), 12)]].mean(0)
        vecs.append(m / np.linalg.norm(m))
    text = lib.encoder.encode_text([p.text for p in matched.pairs]).numpy()
    gt = np.array([units.index(p.span) for p in matched.pairs])
    want = evaluate(text @ np.stack(vecs).T, gt)
    for direction in ("t2v", "v2t"):
        for key, value in want[direction].items():
            assert result[direction][key] == pytest.approx(value), (direction, key)
    with pytest.raises(InputError, match="learned weights"):
        evaluate_store(lib, matched, "seq_transformer")


def test_train_store_writes_a_loadable_checkpoint_and_metrics(lib, caption_file, tmp_path):
    matched = captions.load(caption_file, lib.store)
    out = tmp_path / "ckpt"
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-3, max_frames=12, val_fraction=0.25, seed=1)
    report = train_store(lib, matched, out, config, progress=False)
    module = temporal.load(out, expect_clip_model="vidclip-tiny")
    assert module.name == "seq_transformer"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(report))
    assert metrics["seed"] == 1 and metrics["config"]["epochs"] == 2 and len(metrics["epochs"]) == 3
    assert metrics["init_from_clip"] is True  # heads/activation taken from the tiny CLIP text tower
    assert metrics["logit_scale"]["initial"] == pytest.approx(float(lib.encoder.model.logit_scale.detach().exp()))
    assert metrics["data"]["val"]["videos"] == 1 and metrics["data"]["train"]["videos"] == 3
    assert metrics["clip"]["weights_sha256"] == lib.store.meta["model"]["weights_sha256"]
    assert metrics["best_epoch"] == expected_best_epoch(metrics)
    assert metrics["best"]["epoch"] == metrics["best_epoch"]
    # the checkpoint evaluates on the store it was trained for ...
    result = evaluate_store(lib, matched, str(out))
    assert result["temporal"]["checkpoint"] == str(out.resolve())
    # ... and a checkpoint made for another CLIP model is refused
    temporal.save(temporal.build("seq_transformer", 64), tmp_path / "other", clip_model="ViT-B-32")
    with pytest.raises(StoreMismatchError, match="ViT-B-32"):
        evaluate_store(lib, matched, str(tmp_path / "other"))


def expected_best_epoch(metrics: dict) -> int:
    """The epoch metrics.json should have kept, recomputed from its history (earliest wins ties)."""
    by = metrics["selected_by"]
    rows = [h for h in metrics["epochs"] if by != "train_loss" or h.get("train_loss") is not None]
    if by == "train_loss":
        key = lambda h: (h["train_loss"],)
    elif by == "val_r1":
        key = lambda h: (-h["val"]["t2v"]["R1"], h["val"]["loss"])
    else:
        key = lambda h: (h["val"]["loss"],)
    return min(rows, key=lambda h: (*key(h), h["epoch"]))["epoch"]
