"""Encoder and weights: tensor preprocessing vs open_clip's own, checkpoint loading, safety, offline failure.

All CPU, offline, random weights.  The tiny architecture in tests/models/vidclip-tiny.json keeps
most tests fast; ViT-B-32 (random weights) is used where the real preprocessing matters.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from vidclip.model import weights
from vidclip.config import ModelConfig
from vidclip.model.geometry import FrameGeometry
from vidclip.model.encoder import Encoder, ModelIdentity, TensorPreprocess
from vidclip.errors import InputError, ModelError, UnsafeCheckpointError, WeightsUnavailableError

TINY_JSON = Path(__file__).parent / "models" / "vidclip-tiny.json"
REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(pretrained: str = "none", seed: int = 0, precision: str = "fp32") -> ModelConfig:
    """fp32: these tests compare against open_clip's own fp32 forward (the bf16 path has its own test)."""
    return ModelConfig(name="vidclip-tiny", pretrained=pretrained, config_path=str(TINY_JSON), device="cpu", seed=seed,
                       precision=precision)


def natural_frame(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth structure at several scales plus edges and fine noise: not flat, not pure noise."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), np.float32)
    for cell, amp in ((64, 120.0), (16, 50.0), (4, 20.0)):
        small = rng.uniform(-1, 1, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        planes = [np.asarray(Image.fromarray(small[..., c], mode="F").resize((width, height), Image.BICUBIC))
                  for c in range(3)]
        acc += amp * np.stack(planes, axis=-1)
    yy, xx = np.mgrid[0:height, 0:width]
    acc += 60.0 * (((xx // max(1, width // 7)) + (yy // max(1, height // 5))) % 2)[..., None]  # hard edges
    acc += rng.normal(0, 6, acc.shape)
    return np.clip(acc + 110, 0, 255).astype(np.uint8)


def reference_embeddings(model: torch.nn.Module, frames: list[np.ndarray]) -> torch.Tensor:
    """open_clip's own path: its eval `preprocess` on PIL images, one tensor batch, normalised."""
    preprocess = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    with torch.inference_mode():
        z = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in frames]))
    return F.normalize(z.float(), dim=-1)


FRAME_SIZES = [(320, 240), (240, 320), (1280, 720), (50, 38)]  # (w, h); the last one is upscaled


@pytest.fixture(scope="module")
def tiny() -> Encoder:
    return Encoder.load(tiny_cfg(), batch_size=4)


@pytest.fixture(scope="module")
def vit_b32() -> Encoder:
    return Encoder.load(ModelConfig("ViT-B-32", "none", device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [natural_frame(w, h, seed=i) for i, (w, h) in enumerate(FRAME_SIZES)]


# ----------------------------------------------------------------------------- 1. preprocessing


@pytest.mark.parametrize("which", ["tiny", "vit_b32"])
def test_batched_tensor_preprocessing_matches_open_clip_preprocess(which, request, frames):
    enc: Encoder = request.getfixturevalue(which)
    ours = enc.encode_frames(frames)
    ref = reference_embeddings(enc.model, frames)
    cos = (ours * ref).sum(-1)
    assert cos.min().item() >= 0.999, cos
    # 0.999 alone is a weak bar with random weights (skipping antialiasing still scores ~0.9998);
    # the match is in fact ~1e-6 from identical, and skipping antialias or using bilinear exceeds 1e-5
    assert (1 - cos.double()).max().item() < 1e-5, 1 - cos
    # the threshold is discriminating: different frames are far apart under the same random model
    off_diag = (ref @ ref.T)[~torch.eye(len(frames), dtype=torch.bool)]
    assert off_diag.max().item() < 0.99


@pytest.mark.parametrize(("size", "resize_mode", "interpolation"), [
    (224, "shortest", "bicubic"), ((224, 160), "shortest", "bicubic"),
    (224, "longest", "bicubic"), ((160, 224), "longest", "bicubic"),
    (224, "squash", "bicubic"), ((224, 160), "squash", "bilinear"),
    (224, "shortest", "bilinear"), (64, "longest", "bilinear"),
])
def test_tensor_preprocess_pixels_match_pil_transform(size, resize_mode, interpolation, frames):
    """Model inputs, not just embeddings: every resize mode of open_clip's eval transform."""
    pil = image_transform_v2(PreprocessCfg(size=size, resize_mode=resize_mode, interpolation=interpolation),
                             is_train=False)
    tp = TensorPreprocess(pil)
    assert tp.supported
    for f in frames:
        ref = pil(Image.fromarray(f))
        ours = tp(torch.from_numpy(f).permute(2, 0, 1)[None])[0]
        assert ours.shape == ref.shape
        diff = (ours - ref).abs()
        # normalised units: 0.02 is about 1.4 grey levels out of 255
        assert diff.mean().item() < 0.01 and diff.max().item() < 0.2, (f.shape, diff.mean(), diff.max())


def test_decode_size_is_twice_the_models_and_the_tensor_path_finishes_the_resize(vit_b32, frames):
    assert vit_b32.image_size == (224, 224)
    assert vit_b32.decode_size(1280, 720) == (796, 448)
    assert vit_b32.decode_size(3840, 2160) == (796, 448)
    assert vit_b32.decode_size(240, 320) == (240, 320)  # no larger than twice the model's size: as is
    assert vit_b32.decode_size(400, 1000) == (400, 1000)
    tp = vit_b32._tensor_preprocess
    for w, h in [(1280, 720), (720, 1280), (640, 480), (1920, 1080), (100, 100), (50, 38)]:
        dw, dh = vit_b32.decode_size(w, h)
        assert (dw, dh) == (w, h) or min(dw, dh) == 448
        # from the decoded size, the tensor path's resize lands where open_clip's would from the full frame
        assert tp.resize_hw(dh, dw) == tp.resize_hw(h, w)
        assert FrameGeometry.of_model(vit_b32.model).decode_size(w, h) == (dw, dh)  # Ray's decode tasks agree
    # a frame resized at decode time embeds like the full-size one
    big = frames[2]
    small = np.asarray(Image.fromarray(big).resize(vit_b32.decode_size(1280, 720), Image.BICUBIC))
    z = vit_b32.encode_frames([big, small])
    assert (z[0] @ z[1]).item() >= 0.999


# ----------------------------------------------------------------------------- 2. checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny random state dicts (seeds 1 and 2) as .safetensors and wrapped .pt files."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("ckpt")
    sd1 = Encoder.load(tiny_cfg(seed=1)).model.state_dict()
    sd2 = Encoder.load(tiny_cfg(seed=2)).model.state_dict()
    paths = {
        "s1": d / "seed1.safetensors", "s2": d / "seed2.safetensors",
        "p1": d / "seed1.pt", "p2": d / "seed2.pt",
    }
    save_file({k: v.contiguous() for k, v in sd1.items()}, paths["s1"])
    save_file({k: v.contiguous() for k, v in sd2.items()}, paths["s2"])
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd1.items()}}, paths["p1"])  # DDP-style
    torch.save(sd2, paths["p2"])
    return paths


def test_checkpoint_files_really_load(checkpoints, frames):
    enc = {k: Encoder.load(tiny_cfg(str(p))) for k, p in checkpoints.items()}
    z = {k: e.encode_frames(frames) for k, e in enc.items()}
    assert not torch.allclose(z["s1"], z["s2"], atol=1e-3)
    # the same weights through either format (and wrapped / "module."-prefixed) give the same vectors
    assert torch.equal(z["s1"], z["p1"]) and torch.equal(z["s2"], z["p2"])
    # and they are the seed-1 random model, not the seed-0 model load() starts from
    assert torch.equal(z["s1"], Encoder.load(tiny_cfg(seed=1)).encode_frames(frames))
    again = Encoder.load(tiny_cfg(str(checkpoints["s1"])))
    assert torch.equal(again.encode_frames(frames), z["s1"])
    for k, p in checkpoints.items():
        assert enc[k].identity.weights_sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
        assert enc[k].identity.pretrained == str(p) and enc[k].identity.dim == 64


def test_a_checkpoint_build_skips_random_init_and_loads_to_the_same_model(checkpoints, frames):
    """A model built for a checkpoint draws no random numbers (they cost ~2 CPU-s for ViT-B-32 and
    the checkpoint replaces them), and ends up exactly the model built randomly and then loaded:
    same parameters, same buffers (the text attention mask is not in the checkpoint), same vectors."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from vidclip.model import encoder as encoder_module

    class CountRandomFills(TorchDispatchMode):
        """Counts the random fills that reach torch's kernels (below whatever the mode skips)."""

        n = 0
        RANDOM = {"uniform_", "normal_", "random_", "bernoulli_", "exponential_", "log_normal_", "cauchy_", "geometric_"}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in self.RANDOM:
                CountRandomFills.n += 1
            return func(*args, **(kwargs or {}))

    cfg = tiny_cfg(str(checkpoints["s1"]))
    encoder_module._register_config(cfg)
    with CountRandomFills():
        encoder_module._create_model(cfg, {}, random=True)
    drawn = CountRandomFills.n
    with CountRandomFills():
        bare = encoder_module._create_model(cfg, {}, random=False)
    assert drawn > 0 and CountRandomFills.n == drawn  # the checkpoint build drew none
    weights.load_weights(bare, checkpoints["s1"])
    full = encoder_module._create_model(tiny_cfg(seed=1), {}, random=True)
    theirs, ours = dict(full.named_buffers()), dict(bare.named_buffers())
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert all(torch.equal(v, bare.state_dict()[k]) for k, v in full.state_dict().items())
    loaded = Encoder.load(cfg)
    assert torch.equal(loaded.encode_frames(frames), Encoder.load(tiny_cfg(seed=1)).encode_frames(frames))
    assert torch.equal(loaded.encode_text(["a dog", "a red car"]), Encoder.load(tiny_cfg(seed=1)).encode_text(["a dog", "a red car"]))


def test_checkpoint_digest_is_kept_between_processes_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "_sha_memo", {})
    kept = tmp_path / "cache" / "sha256"
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"a" * 5000)
    assert weights.file_sha256(f) == hashlib.sha256(b"a" * 5000).hexdigest()
    assert not kept.exists()  # just written: its times cannot tell a rewrite within the same tick apart
    monkeypatch.setattr(weights, "SETTLED_S", 0.0)
    weights._sha_memo.clear()
    time.sleep(0.05)
    assert weights.file_sha256(f) == hashlib.sha256(b"a" * 5000).hexdigest()
    [entry] = kept.iterdir()
    # another process reads the kept digest instead of hashing the file (a planted one shows it)
    weights._sha_memo.clear()
    entry.write_text("0" * 64)
    assert weights.file_sha256(f) == "0" * 64
    # rewritten with the same size and its mtime put back: the ctime moved, so it is hashed again
    st = f.stat()
    time.sleep(0.05)
    f.write_bytes(b"b" * 5000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    weights._sha_memo.clear()
    assert weights.file_sha256(f) == hashlib.sha256(b"b" * 5000).hexdigest()
    # an unwritable cache is skipped
    monkeypatch.setenv("VIDCLIP_CACHE", str(f))  # a file, not a folder
    weights._sha_memo.clear()
    assert weights.file_sha256(f) == hashlib.sha256(b"b" * 5000).hexdigest()


def test_architecture_mismatch_is_one_line_model_error(checkpoints, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(checkpoints["s1"])
    sd.pop("visual.proj")
    sd["text_projection"] = torch.zeros(64, 32)
    sd["extra.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.safetensors"
    save_file(sd, bad)
    with pytest.raises(ModelError) as ei:
        Encoder.load(tiny_cfg(str(bad)))
    msg = str(ei.value)
    assert "\n" not in msg and len(msg) < 400
    assert "1 missing" in msg and "1 unexpected" in msg and "1 shape-mismatched" in msg

    not_a_ckpt = tmp_path / "junk.pt"
    not_a_ckpt.write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(ModelError) as ei:
        Encoder.load(tiny_cfg(str(not_a_ckpt)))
    assert "\n" not in str(ei.value)


# ----------------------------------------------------------------------------- 3. random weights


def test_random_weights_are_seeded_and_fingerprinted(tiny, frames, caplog):
    with caplog.at_level("WARNING", logger="vidclip"):
        same = Encoder.load(tiny_cfg(seed=0))
    assert any("random weights" in r.getMessage() for r in caplog.records)
    other = Encoder.load(tiny_cfg(seed=1))
    assert torch.equal(tiny.encode_frames(frames), same.encode_frames(frames))
    assert tiny.identity == same.identity
    assert tiny.identity.weights_sha256 != other.identity.weights_sha256
    assert not torch.allclose(tiny.encode_frames(frames), other.encode_frames(frames), atol=1e-3)

    # and in a fresh process
    code = (
        "import sys, torch, numpy as np; sys.path.insert(0, sys.argv[1])\n"
        "from vidclip.config import ModelConfig\nfrom vidclip.model.encoder import Encoder\n"
        "e = Encoder.load(ModelConfig('vidclip-tiny', 'none', config_path=sys.argv[2], device='cpu', seed=0))\n"
        "z = e.encode_text(['a red car', 'two dogs'])\n"
        "print(e.identity.weights_sha256, z.numpy().tobytes().hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO), str(TINY_JSON)],
                         capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert out[0] == tiny.identity.weights_sha256
    # equal up to float rounding: MKL may split a small GEMM differently under load (MKL_DYNAMIC)
    theirs = np.frombuffer(bytes.fromhex(out[1]), np.float32)
    ours = tiny.encode_text(["a red car", "two dogs"]).numpy().ravel()
    np.testing.assert_allclose(theirs, ours, atol=1e-6, rtol=0)


def test_identity_round_trip(tiny):
    d = tiny.identity.to_dict()
    assert set(d) == {"name", "pretrained", "weights_sha256", "dim"}
    back = ModelIdentity.from_dict(d)
    assert back == tiny.identity and back.matches(tiny.identity)
    moved = ModelIdentity(d["name"], "/elsewhere/w.safetensors", d["weights_sha256"], d["dim"])
    assert moved.matches(tiny.identity)
    assert not ModelIdentity(d["name"], "none", "0" * 64, d["dim"]).matches(tiny.identity)


# ----------------------------------------------------------------------------- 4. unsafe pickles


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.mark.parametrize("fmt", ["torch_save", "raw_pickle"])
def test_malicious_pickle_is_refused_and_never_run(fmt, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / ("evil.pt" if fmt == "torch_save" else "evil.bin")
    payload = {"state_dict": {"visual.proj": _Payload(marker)}}
    if fmt == "torch_save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError) as ei:
        Encoder.load(tiny_cfg(str(path)))
    assert str(path) in str(ei.value) and "\n" not in str(ei.value)
    assert not marker.exists()
    # the payload is live: an unrestricted unpickle would have run it
    if fmt == "raw_pickle":
        with open(path, "rb") as f:
            pickle.load(f)
        assert marker.exists()


# ----------------------------------------------------------------------------- 5. unavailable weights


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty HF cache, and a guard so that no test here ever starts a real download."""
    import huggingface_hub.constants as hfc

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(open_clip, "download_pretrained", no_download)

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    return cache


def _hub_resolves() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return True
    except OSError:
        return False


def _assert_offline_message(msg: str):
    assert "\n" not in msg
    assert "--pretrained /path/to/" in msg and "--pretrained none" in msg
    assert "laion2b_s34b_b79k" in msg and "ViT-B-32" in msg


OFFLINE_TAG = ModelConfig("ViT-B-32", "laion2b_s34b_b79k", device="cpu")


def test_offline_tag_fails_fast_with_real_network(empty_hf_cache):
    if _hub_resolves():
        pytest.skip("huggingface.co is reachable here: this test would download ViT-B-32")
    assert not weights.is_cached(OFFLINE_TAG)
    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as ei:
        Encoder.load(OFFLINE_TAG)
    assert time.monotonic() - t0 < 8
    _assert_offline_message(str(ei.value))


def test_unreachable_hub_fails_fast(empty_hf_cache, unreachable_hub, monkeypatch):
    import huggingface_hub.constants as hfc

    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as ei:
        weights.resolve(OFFLINE_TAG)
    assert time.monotonic() - t0 < 5
    _assert_offline_message(str(ei.value))

    # a black hole (TCP accepted, no answer) costs the probe timeout, once, not minutes of retries
    monkeypatch.setattr(weights, "PROBE_TIMEOUT_S", 1.0)
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        endpoint = f"http://127.0.0.1:{hole.getsockname()[1]}"
        monkeypatch.setattr(hfc, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        t0 = time.monotonic()
        with pytest.raises(WeightsUnavailableError, match="Timeout"):
            weights.resolve(OFFLINE_TAG)
        assert time.monotonic() - t0 < 3

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        weights.resolve(OFFLINE_TAG)


def test_cached_tag_resolves_without_network(empty_hf_cache, monkeypatch):
    import huggingface_hub.constants as hfc

    # any network use would fail (and download_pretrained is disabled by the fixture)
    monkeypatch.setattr(hfc, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hfc, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    commit = "0" * 40
    repo = empty_hf_cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"stand-in")
    assert weights.is_cached(OFFLINE_TAG)
    src = weights.resolve(OFFLINE_TAG)
    assert src.kind == "tag" and Path(src.path) == snap / "open_clip_model.safetensors"
    assert src.preprocess["resize_mode"] == "shortest"


def test_tag_takes_weights_and_preprocessing_from_open_clip_registry(checkpoints, monkeypatch, frames):
    """A registered tag (here one with a local 'file', which open_clip's download returns as is)
    brings its weights and its preprocessing overrides, as open_clip.create_model would."""
    from open_clip.pretrained import _PRETRAINED

    tag_cfg = {"file": str(checkpoints["s1"]), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
               "interpolation": "bilinear", "resize_mode": "squash"}
    monkeypatch.setitem(_PRETRAINED, "vidclip-tiny", {"testtag": tag_cfg})
    assert weights.is_cached(tiny_cfg("testtag"))
    enc = Encoder.load(tiny_cfg("testtag"))
    ref = Encoder.load(tiny_cfg(str(checkpoints["s1"])))
    assert enc.identity.weights_sha256 == ref.identity.weights_sha256
    assert all(torch.equal(a, b) for a, b in zip(enc.model.state_dict().values(), ref.model.state_dict().values()))
    pp = open_clip.get_model_preprocess_cfg(enc.model)
    assert pp["resize_mode"] == "squash" and tuple(pp["mean"]) == (0.5, 0.5, 0.5)
    assert enc.decode_size(1280, 720) == (128, 128)  # squash, at twice the model size
    cos = (enc.encode_frames(frames) * reference_embeddings(enc.model, frames)).sum(-1)
    assert cos.min().item() >= 0.999


def test_unknown_tag_and_missing_file(tmp_path):
    with pytest.raises(WeightsUnavailableError) as ei:
        Encoder.load(ModelConfig("ViT-B-32", "no_such_tag", device="cpu"))
    assert "laion2b_s34b_b79k" in str(ei.value) and "\n" not in str(ei.value)
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsUnavailableError, match="nope.safetensors"):
        Encoder.load(tiny_cfg(str(missing)))
    assert not weights.is_cached(tiny_cfg(str(missing)))
    assert weights.is_cached(tiny_cfg("none"))
    with pytest.raises(ModelError, match="unknown model"):
        Encoder.load(ModelConfig("ViT-Nope-1", "none", device="cpu"))


# ----------------------------------------------------------------------------- 6. text


def test_encode_text_uses_open_clip_tokenizer(tiny):
    texts = ["a dog running on a beach", "a red car at night", "", "two people talking", "fireworks"]
    z = tiny.encode_text(texts)  # batch_size=4: two batches
    assert z.shape == (5, 64) and z.dtype == torch.float32 and z.device.type == "cpu"
    assert torch.allclose(z.norm(dim=-1), torch.ones(5), atol=1e-5)
    tok = open_clip.get_tokenizer("vidclip-tiny")
    with torch.inference_mode():
        manual = F.normalize(tiny.model.encode_text(tok(texts)).float(), dim=-1)
    assert torch.allclose(z, manual, atol=1e-5)
    assert tiny.encode_text([]).shape == (0, 64)


@pytest.mark.slow
def test_encode_text_cuts_context_after_eot_without_changing_vectors(vit_b32):
    """The text tower runs only up to the last EOT of the batch, and the vectors equal open_clip's
    full 77-token encode_text (a causal tower pooled at EOT cannot see the padding)."""
    texts = ["a dog", "a person cooking dinner in a small kitchen at night", "x " * 120]  # the last is truncated
    model = vit_b32.model
    seen = []
    hook = model.transformer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    try:
        short = vit_b32.encode_text(texts[:2])
        single = vit_b32.encode_text(texts[:1])
        long = vit_b32.encode_text(texts)
    finally:
        hook.remove()
    bpe = open_clip.get_tokenizer("ViT-B-32").encode  # BPE ids without the start/end tokens
    assert seen == [len(bpe(texts[1])) + 2, len(bpe(texts[0])) + 2, 77]  # (B, n) per call: n = longest + SOT + EOT
    with torch.inference_mode():
        full = F.normalize(model.encode_text(vit_b32.tokenizer(texts)).float(), dim=-1)
    assert (long - full).abs().max() < 1e-5
    assert (short - full[:2]).abs().max() < 1e-5 and (single - full[:1]).abs().max() < 1e-5


# ----------------------------------------------------------------------------- 7. batching


def test_encode_frames_batches_and_keeps_order(tiny, monkeypatch):
    sizes = [(320, 240), (240, 320), (320, 240), (64, 64), (1280, 720), (240, 320), (320, 240), (64, 64),
             (99, 77), (320, 240)]
    frames = [natural_frame(w, h, seed=10 + i) for i, (w, h) in enumerate(sizes)]
    one_by_one = torch.cat([tiny.encode_frames([f]) for f in frames])

    calls = []
    real = tiny.model.encode_image
    monkeypatch.setattr(tiny.model, "encode_image", lambda x, **kw: calls.append(len(x)) or real(x, **kw))
    batched = tiny.encode_frames(frames)
    assert calls == [4, 4, 2]  # one forward per batch_size chunk, across size groups
    assert batched.shape == (10, 64)
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(10), atol=1e-5)

    same_size = np.stack([natural_frame(320, 240, seed=40 + i) for i in range(6)])  # (N, H, W, 3)
    assert torch.allclose(tiny.encode_frames(same_size), tiny.encode_frames(list(same_size)), atol=1e-6)
    assert torch.allclose(tiny.encode_frames(torch.from_numpy(same_size)), tiny.encode_frames(same_size))
    assert tiny.encode_frames([]).shape == (0, 64)
    with pytest.raises(InputError):
        tiny.encode_frames([np.zeros((10, 10, 3), np.float32)])


def test_encode_images_accepts_pil_paths_and_arrays(tiny, frames, tmp_path):
    f = frames[0]
    path = tmp_path / "x.png"
    Image.fromarray(f).save(path)
    z = tiny.encode_images([Image.fromarray(f), str(path), f, Image.fromarray(f).convert("RGBA")])
    assert torch.allclose(z, tiny.encode_frames([f] * 4), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_reference(frames):
    enc = Encoder.load(ModelConfig("ViT-B-32", "none", device="cuda"))
    ours = enc.encode_frames(frames)
    ref = reference_embeddings(enc.model.float().cpu(), frames)
    assert ours.device.type == "cpu"
    assert (ours * ref).sum(-1).min().item() >= 0.995  # autocast fp16/bf16 forward


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_staging_keeps_every_frame_and_its_order():
    """Pinned double-buffered uploads and vectors held on the device across batches: every frame
    of many small mixed-size batches (more than _PENDING_BATCHES of them) gets its own vector."""
    from vidclip.model import encoder as encoder_mod

    sizes = [(320, 240), (240, 320), (64, 64), (1280, 720), (398, 224)]
    frames = [natural_frame(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes * 8)]
    gpu = Encoder.load(ModelConfig("ViT-B-32", "none", device="cuda"), batch_size=3)
    assert len(frames) / 3 > encoder_mod._PENDING_BATCHES
    cpu = Encoder.load(ModelConfig("ViT-B-32", "none", device="cpu"), batch_size=64)
    a, b = gpu.encode_frames(frames), cpu.encode_frames(frames)
    assert a.shape == b.shape == (len(frames), gpu.dim) and a.device.type == "cpu"
    assert (a * b).sum(-1).min().item() >= 0.995  # each row is its own frame's vector (bf16/fp16 forward)
    assert (a[:-1] * a[1:]).sum(-1).max().item() < 0.999  # and rows are not repeats of a stale buffer


@pytest.mark.parametrize("name", ["vidclip-tiny", "ViT-B-32"])
def test_bf16_image_tower_stays_close_to_fp32_and_leaves_the_model_alone(name, frames):
    """precision bf16 on a CPU: images go through a bf16 copy of the image tower, within cosine
    0.999 of fp32 (measured ~0.99994 for ViT-B-32); `model`, the text tower and the state dict stay
    fp32; "auto" picks bf16 exactly where the CPU computes it natively."""
    from vidclip.model.encoder import cpu_computes_bf16

    config = str(TINY_JSON) if name == "vidclip-tiny" else None
    full = Encoder.load(ModelConfig(name, "none", config_path=config, device="cpu", precision="fp32"))
    half = Encoder.load(ModelConfig(name, "none", config_path=config, device="cpu", precision="bf16"))
    auto = Encoder.load(ModelConfig(name, "none", config_path=config, device="cpu"))
    assert (full.precision, half.precision) == ("fp32", "bf16")
    assert auto.precision == ("bf16" if cpu_computes_bf16() else "fp32")
    a, b = full.encode_frames(frames), half.encode_frames(frames)
    assert a.dtype == b.dtype == torch.float32
    cos = (a * b).sum(-1)
    assert cos.min().item() > 0.999 and not torch.equal(a, b)  # close, and really computed in bf16
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert all(torch.equal(x, y) for x, y in zip(full.model.state_dict().values(), half.model.state_dict().values()))
    torch.testing.assert_close(full.encode_text(["a dog", "a cat"]), half.encode_text(["a dog", "a cat"]))
    with pytest.raises(InputError, match="--precision"):
        ModelConfig(name, "none", precision="fp8")


def test_cpu_model_inputs_are_open_clips_own_pixels(vit_b32):
    """On a CPU the resize is PIL's (the one open_clip's eval transform runs), so the model input
    equals the reference transform's to float rounding, for numpy and CPU-tensor frames alike."""
    group = [natural_frame(796, 448, seed=70 + i) for i in range(3)]
    ref = torch.stack([vit_b32.preprocess(Image.fromarray(f)) for f in group])  # (3, 3, 224, 224)
    ours = vit_b32._preprocess_group(group)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-5
    torch.testing.assert_close(vit_b32._preprocess_group([torch.from_numpy(f) for f in group]), ours)
