"""Model families beyond OpenAI-style CLIP, offline, with real tiny architectures built at test time
(tests/hfmodels.py): a multilingual Hugging Face text tower (XLM-R) and a BERT one from local
folders, and a SigLIP-style model (logit bias, sigmoid scoring, its own preprocessing)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hfmodels
import vidclip
from conftest import LIBRARY_SPECS, SAMPLING
from vidclip.config import ModelConfig
from vidclip.errors import ModelError, StoreMismatchError
from vidclip.model.encoder import Encoder

ZH_QUERY = "一只狗在海滩上接飞盘"
EN_QUERY = "a dog catches a frisbee on the beach"
RU_QUERY = "собака ловит фрисби на пляже"


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> hfmodels.Families:
    return hfmodels.build(tmp_path_factory.mktemp("families"))


def cfg(families, which: str, pretrained: str = "none", **kw) -> ModelConfig:
    path = {"xlmr": families.xlmr_config, "bert": families.bert_config, "siglip": families.siglip_config}[which]
    return ModelConfig(name=path.stem, pretrained=pretrained, config_path=str(path), device="cpu", precision="fp32", **kw)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails and is recorded: a load that needs the network fails, and one
    that only tried shows up in the list."""
    tried = []

    def refuse(self, address, *args):
        tried.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tried


def _frames(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 90, 120, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- building


def test_hf_text_tower_builds_from_local_folders_without_the_network(families, no_network):
    from open_clip.hf_model import HFTextEncoder

    enc = Encoder.load(cfg(families, "xlmr"))
    assert isinstance(enc.model.text, HFTextEncoder)
    assert enc.count_tokens(ZH_QUERY) is not None and enc.encode_text([ZH_QUERY]).shape == (1, 32)
    assert no_network == []  # nothing was even tried
    # the tower is built from the folder's config only: the folder's weights (all 0.125) are not taken
    emb = enc.model.text.transformer.embeddings.word_embeddings.weight
    assert not torch.all(emb == hfmodels.FOLDER_WEIGHT)
    # seeded: the same random model, and the same fingerprint, every time
    again = Encoder.load(cfg(families, "xlmr"))
    assert again.identity == enc.identity
    assert torch.equal(again.encode_text([ZH_QUERY, EN_QUERY]), enc.encode_text([ZH_QUERY, EN_QUERY]))


def test_checkpoint_round_trip_and_a_different_text_tower_refused(families, tmp_path, no_network):
    from safetensors.torch import save_file

    random = Encoder.load(cfg(families, "xlmr", seed=3))
    path = tmp_path / "xlmr.safetensors"
    save_file({k: v.contiguous() for k, v in random.model.state_dict().items()}, str(path))
    loaded = Encoder.load(cfg(families, "xlmr", pretrained=str(path)))  # built without random init, then strict load
    texts = [ZH_QUERY, EN_QUERY, RU_QUERY]
    assert torch.equal(loaded.encode_text(texts), random.encode_text(texts))
    assert torch.equal(loaded.encode_frames(_frames()), random.encode_frames(_frames()))
    # non-persistent buffers (position ids, token type ids) are built, not loaded: they must be right
    for name, buf in random.model.named_buffers():
        assert torch.equal(dict(loaded.model.named_buffers())[name], buf), name
    # the checkpoint of an XLM-R tower does not load into a BERT tower
    with pytest.raises(ModelError, match="does not match") as ei:
        Encoder.load(cfg(families, "bert", pretrained=str(path)))
    assert "\n" not in str(ei.value) and "xlmr.safetensors" in str(ei.value)


def test_siglip_style_preprocessing_follows_the_model_config(families):
    from PIL import Image

    enc = Encoder.load(cfg(families, "siglip"))
    steps = enc.preprocess.transforms
    norm = steps[-1]
    assert tuple(norm.mean) == (0.5, 0.5, 0.5) and tuple(norm.std) == (0.5, 0.5, 0.5)
    assert str(steps[0].interpolation.value) == "bilinear" and tuple(steps[0].size) == (64, 64)  # squash
    frames = _frames(4)
    # vidclip's batched tensor path gives open_clip's own PIL preprocessing for this config
    ref = torch.stack([enc.preprocess(Image.fromarray(f)) for f in frames])
    with torch.inference_mode():
        want = F.normalize(enc.model.encode_image(ref), dim=-1)
    assert torch.allclose(enc.encode_frames(frames), want, atol=2e-3)
    xlmr = Encoder.load(cfg(families, "xlmr"))  # no preprocess_cfg: open_clip's OpenAI defaults, crop
    assert tuple(xlmr.preprocess.transforms[-1].std) != (0.5, 0.5, 0.5)


def test_model_config_preprocess_and_layout_errors(families, tmp_path):
    raw = json.loads(families.siglip_config.read_text())
    bad = tmp_path / "vidclip-bad.json"
    bad.write_text(json.dumps({**raw, "preprocess_cfg": {"mean": [0.5, 0.5], "std": [0.5] * 3}}))
    with pytest.raises(ModelError, match=r"preprocess_cfg.mean must be 3 numbers"):
        Encoder.load(ModelConfig("vidclip-bad", "none", config_path=str(bad), device="cpu"))
    bad.write_text(json.dumps({**raw, "preprocess_cfg": {"colour": "red"}}))
    with pytest.raises(ModelError, match="unknown preprocess_cfg key"):
        Encoder.load(ModelConfig("vidclip-bad", "none", config_path=str(bad), device="cpu"))
    # open_clip_config.json's layout (as hub repositories ship it), relative folders against its own folder
    folder = tmp_path / "hubcopy"
    shutil.copytree(families.tokenizer, folder / "tokenizer")
    pp = raw.pop("preprocess_cfg")
    raw["text_cfg"]["hf_tokenizer_name"] = "tokenizer"
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": raw, "preprocess_cfg": pp}))
    enc = Encoder.load(ModelConfig("my-siglip", "none", config_path=str(folder / "open_clip_config.json"), device="cpu"))
    assert tuple(enc.preprocess.transforms[-1].mean) == (0.5, 0.5, 0.5)
    assert enc.model.logit_bias is not None and enc.count_tokens(ZH_QUERY) > 2


def test_local_siglip_checkpoint_is_preprocessed_like_its_tags(tmp_path):
    from vidclip.model import weights

    ckpt = tmp_path / "siglip.safetensors"
    ckpt.write_bytes(b"not read by resolve")
    src = weights.resolve(ModelConfig("ViT-B-16-SigLIP", str(ckpt)))
    assert src.kind == "file" and tuple(src.preprocess["mean"]) == (0.5, 0.5, 0.5) and src.preprocess["resize_mode"] == "squash"
    assert weights.resolve(ModelConfig("ViT-B-32", str(ckpt))).preprocess.get("resize_mode", "shortest") == "shortest"


# ----------------------------------------------------------------------------- errors


def test_hub_name_offline_is_one_fast_line_saying_how_to_use_a_local_copy(families, tmp_path, monkeypatch, caplog,
                                                                        unreachable_hub):
    import time

    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    raw = json.loads(families.xlmr_config.read_text())
    raw["text_cfg"].update(hf_model_name="xlm-roberta-base", hf_tokenizer_name="xlm-roberta-base")
    path = tmp_path / "vidclip-hub.json"
    path.write_text(json.dumps(raw))
    import open_clip  # noqa: F401 - imported (with transformers) before the clock starts

    t0 = time.monotonic()
    with pytest.raises(ModelError) as ei:
        Encoder.load(ModelConfig("vidclip-hub", "none", config_path=str(path), device="cpu"))
    assert time.monotonic() - t0 < 10  # one probe, not transformers' ~25 s of retries per file
    msg = str(ei.value)
    assert "\n" not in msg and "'xlm-roberta-base'" in msg and "hub" in msg
    assert "hf_model_name" in msg and "--model-config" in msg and "hf download xlm-roberta-base" in msg
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set"):
        Encoder.load(ModelConfig("vidclip-hub", "none", config_path=str(path), device="cpu"))
    # a copy in the HF cache is used (transformers reads it), with a warning when the hub is only unreachable
    from vidclip.model import hf

    snap = tmp_path / "empty-cache" / "models--xlm-roberta-base" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    (snap / "config.json").write_text("{}")
    hf.check("vidclip-hub", {"hf_model_name": "xlm-roberta-base"})  # offline flag set: silent
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
    with caplog.at_level(logging.WARNING, logger="vidclip"):
        hf.check("vidclip-hub", {"hf_model_name": "xlm-roberta-base"})
    assert any("HF_HUB_OFFLINE=1" in r.getMessage() for r in caplog.records)
    with pytest.raises(ModelError, match="'xlm-roberta-base' is a Hugging Face hub name"):  # its tokenizer is not cached
        hf.check("vidclip-hub", {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base"})
    # a local folder that is not there is named as such
    raw["text_cfg"].update(hf_model_name=str(tmp_path / "nowhere"))
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="nowhere' is not a folder"):
        Encoder.load(ModelConfig("vidclip-hub", "none", config_path=str(path), device="cpu"))


def test_without_transformers_an_hf_model_is_one_line_with_the_install_hint(families, tmp_path, cli_env, video_dir):
    # a fresh process where importing transformers fails, as on an install without the [hf] extra
    code = ("import sys; sys.modules['transformers'] = None; sys.argv[0] = 'vidclip'; "
            "from vidclip.cli import run; run()")
    args = ["ingest", str(video_dir), "--db", str(tmp_path / "db"), "--model", "vidclip-xlmr", "--pretrained", "none",
            "--model-config", str(families.xlmr_config), "--local"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=cli_env, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("vidclip: error:") and 'pip install "vidclip[hf]"' in lines[0]
    assert "vidclip-xlmr" in lines[0]


# ----------------------------------------------------------------------------- queries


def test_multilingual_queries_reach_the_text_tower_intact(families):
    enc = Encoder.load(cfg(families, "xlmr"))
    hf_tok = enc.tokenizer.tokenizer
    for q in (ZH_QUERY, RU_QUERY, "Собака ЛОВИТ фрисби"):
        ids = hf_tok(q)["input_ids"]
        assert hf_tok.unk_token_id not in ids, (q, hf_tok.convert_ids_to_tokens(ids))
    from vidclip.query.embedding import embed_text_image

    vecs = {}
    for q in (ZH_QUERY, EN_QUERY, RU_QUERY, "Собака ЛОВИТ фрисби"):
        vecs[q] = embed_text_image(enc, f"  {q} \n", None, None)  # (D,)
        with torch.inference_mode():
            direct = F.normalize(enc.model.encode_text(enc.tokenizer([q])), dim=-1)[0].numpy()
        np.testing.assert_allclose(vecs[q], direct, atol=1e-6)
    # case is kept for a case-sensitive multilingual tokenizer (no lowercasing on the way)
    assert not np.allclose(vecs[RU_QUERY], vecs["Собака ЛОВИТ фрисби"], atol=1e-4)
    assert not np.allclose(vecs[ZH_QUERY], vecs[EN_QUERY], atol=1e-4)


def test_query_length_is_counted_in_the_models_tokens(families, caplog):
    from vidclip.query.embedding import embed_text_image

    enc = Encoder.load(cfg(families, "xlmr"))
    assert enc.context_length == hfmodels.CONTEXT
    # over 1000 characters but few tokens (whitespace is cleaned away): read whole, no warning
    spaced = "a dog" + " " * 1500 + "catches a frisbee"
    with caplog.at_level(logging.WARNING, logger="vidclip"):
        vec = embed_text_image(enc, spaced, None, None)
    assert not [r for r in caplog.records if "tokens" in r.getMessage()]
    np.testing.assert_allclose(vec, embed_text_image(enc, "a dog catches a frisbee", None, None), atol=1e-6)
    # under 1000 characters but more tokens than the model reads: cut to the context, with a warning
    long = "，".join([ZH_QUERY, "一只猫在公园里在睡觉", "两个人在城市里在散步"] * 6)
    n = len(enc.tokenizer.tokenizer(long)["input_ids"])
    assert len(long) < 1000 and n > hfmodels.CONTEXT and enc.count_tokens(long) == n
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vidclip"):
        vec = embed_text_image(enc, long, None, None)
    said = [r.getMessage() for r in caplog.records if "tokens" in r.getMessage()]
    assert said == [f"the query is {n} tokens; model vidclip-xlmr reads the first {hfmodels.CONTEXT} "
                    f"(start and end included), the rest is ignored"]
    ids = enc.tokenizer([long])
    assert ids.shape == (1, hfmodels.CONTEXT) and int(ids[0, -1]) == enc.tokenizer.tokenizer.eos_token_id  # truncated, ended
    with torch.inference_mode():
        np.testing.assert_allclose(vec, F.normalize(enc.model.encode_text(ids), dim=-1)[0].numpy(), atol=1e-6)
    # OpenAI CLIP's byte-pair tokenizer counts its own way (start + words + end)
    from conftest import TINY

    tiny = Encoder.load(TINY)
    assert tiny.context_length == 77 and tiny.count_tokens("a red car") == 5
    assert tiny.count_tokens(" ".join(["dog"] * 100)) == 102


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def xlmr_lib(families, tmp_path_factory, video_dir):
    root = tmp_path_factory.mktemp("xlmr")
    lib = vidclip.open(root / "db", model=cfg(families, "xlmr"))
    report = lib.ingest([video_dir], SAMPLING, progress=False)
    assert report.ok == len(LIBRARY_SPECS)
    return lib


def _stored(lib, table="clips"):
    rows = lib.store.table(table).to_arrow().to_pylist()
    return rows, np.stack([np.asarray(r["vector"], np.float32) for r in rows])


def test_multilingual_store_searches_classifies_and_reopens(xlmr_lib, families):
    lib = xlmr_lib
    rows, clip_vecs = _stored(lib)
    results = {}
    for q in (ZH_QUERY, EN_QUERY, RU_QUERY):
        hits = lib.search(q, k=len(rows), per_video=100, moment="clip")
        qv = lib.encoder.encode_text([q])[0].numpy()
        want = sorted(clip_vecs @ qv, reverse=True)
        np.testing.assert_allclose([h.score for h in hits], want, atol=1e-4)  # ranked by cosine
        results[q] = [(h.video_id, h.start_s) for h in hits]
    assert results[ZH_QUERY] != results[EN_QUERY] or results[ZH_QUERY] != results[RU_QUERY]
    # classify with labels and a template in Chinese: CLIP's softmax (no logit bias)
    labels = ["一只狗", "一辆红色的汽车", "森林"]
    res = lib.classify(labels, templates=["一段{}的视频"], level="video")
    assert res.scoring == "softmax"
    _, video_vecs = _stored(lib, "video_vectors")
    text = lib.encoder.encode_text([f"一段{x}的视频" for x in labels]).numpy()
    vids = {r["video_id"]: np.asarray(r["vector"]) for r in lib.store.table("video_vectors").to_arrow().to_pylist()}
    from vidclip.query.classify import logit_scale

    for row in res.to_dicts():
        logits = logit_scale(lib.encoder) * vids[row["video_id"]] @ text.T
        p = np.exp(logits - logits.max())
        np.testing.assert_allclose([row[f"p:{x}"] for x in labels], p / p.sum(), atol=1e-5)
    # reopened with no model arguments: the store's own model (its config JSON), same hits
    again = vidclip.open(lib.uri)
    hits = again.search(ZH_QUERY, k=len(rows), per_video=100, moment="clip")
    assert [(h.video_id, h.start_s) for h in hits] == results[ZH_QUERY]
    assert again.encoder.identity == lib.encoder.identity


def test_multilingual_search_from_a_fresh_process_offline(xlmr_lib, cli_env, tmp_path):
    # any hub request from that process fails at once; a C locale (ASCII) must not mangle the query
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = dict(cli_env, HF_ENDPOINT=closed, LC_ALL="C", LANG="C", HF_HOME=str(tmp_path / "hf"))
    want = xlmr_lib.search(ZH_QUERY, k=5).to_dicts()
    proc = subprocess.run([sys.executable, "-m", "vidclip", "search", ZH_QUERY, "--db", xlmr_lib.uri, "-k", "5", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert [(h["video_id"], h["start_s"]) for h in got] == [(h["video_id"], h["start_s"]) for h in want]
    np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in want], atol=1e-5)


@pytest.fixture(scope="module")
def siglip_ckpt(families, tmp_path_factory):
    """A SigLIP-style checkpoint with a scale and bias that make sigmoid probabilities spread out."""
    from safetensors.torch import save_file

    enc = Encoder.load(cfg(families, "siglip", seed=5))
    sd = {k: v.contiguous().clone() for k, v in enc.model.state_dict().items()}
    sd["logit_scale"] = torch.tensor(math.log(8.0))
    sd["logit_bias"] = torch.tensor(-1.5)
    path = tmp_path_factory.mktemp("siglip") / "siglip.safetensors"
    save_file(sd, str(path))
    other = dict(sd, logit_bias=torch.tensor(0.5))
    save_file(other, str(path.with_name("siglip-other-bias.safetensors")))
    return path


def test_siglip_classify_uses_the_models_sigmoid(families, siglip_ckpt, tmp_path, video_dir, cli_env):
    lib = vidclip.open(tmp_path / "db", model=cfg(families, "siglip", pretrained=str(siglip_ckpt)))
    assert lib.ingest([video_dir], SAMPLING, progress=False).ok == len(LIBRARY_SPECS)
    labels = ["a dog", "a red car", "一只猫"]
    res = lib.classify(labels, templates=["a video of {}."], level="clip")
    assert res.scoring == "sigmoid"
    model = lib.encoder.model
    scale, bias = float(model.logit_scale.detach().exp()), float(model.logit_bias.detach())
    assert (round(scale, 5), bias) == (8.0, -1.5)  # the checkpoint's, not the config's init (10, -10)
    text = lib.encoder.encode_text([f"a video of {x}." for x in labels]).numpy()
    clips = {(r["video_id"], r["clip_id"]): np.asarray(r["vector"]) for r in lib.store.table("clips").to_arrow().to_pylist()}
    rows = res.to_dicts()
    probs = np.array([[r[f"p:{x}"] for x in labels] for r in rows])
    for row, p in zip(rows, probs):
        cos = clips[(row["video_id"], row["clip_id"])] @ text.T
        np.testing.assert_allclose(p, 1 / (1 + np.exp(-(scale * cos + bias))), atol=1e-6)
    assert not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)  # independent per label, not a softmax
    # search ranks by cosine, unchanged by the sigmoid
    hits = lib.search("a dog", k=5, per_video=100, moment="clip")
    qv = lib.encoder.encode_text(["a dog"])[0].numpy()
    np.testing.assert_allclose([h.score for h in hits], sorted(np.stack(list(clips.values())) @ qv, reverse=True)[:5], atol=1e-4)
    # from a fresh process: --json says which scoring, with the same numbers
    proc = subprocess.run([sys.executable, "-m", "vidclip", "classify", *labels, "--db", str(tmp_path / "db"), "--level", "clip",
                           "--template", "a video of {}.", "--json", "--device", "cpu"],
                          capture_output=True, text=True, env=cli_env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["scoring"] for r in got} == {"sigmoid"} and len(got) == len(rows)
    by_key = {(r["video_id"], r["clip_id"]): r for r in got}
    for row in rows:
        assert abs(by_key[(row["video_id"], row["clip_id"])]["p:a dog"] - row["p:a dog"]) < 1e-6
    # the scale and bias are the store's model's: another bias is another model, refused
    other = vidclip.open(tmp_path / "db", pretrained=str(siglip_ckpt.with_name("siglip-other-bias.safetensors")))
    with pytest.raises(StoreMismatchError):
        other.classify(labels)


def test_clip_classify_json_says_softmax(xlmr_lib, capsys):
    import argparse

    from vidclip.cli import query as query_cli

    parser = argparse.ArgumentParser()
    query_cli.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["classify", "一只狗", "森林", "--db", xlmr_lib.uri, "--template", "一段{}的视频", "--json",
                              "--device", "cpu"])
    assert query_cli.COMMANDS["classify"](args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and {r["scoring"] for r in rows} == {"softmax"}
    assert all(abs(r["p:一只狗"] + r["p:森林"] - 1) < 1e-6 for r in rows)
