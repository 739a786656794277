"""vidclip.deferral: lancedb is imported without its REST namespace client's API modules, and
open_clip without torchvision's and timm's models, ops and torch._dynamo; each still works, whole,
for whoever asks for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = r"""
import sys, threading
from vidclip.store.store import Store

s = Store.open(sys.argv[1], create=True)
s.ensure_vector_tables(8)
api = sorted(m for m in sys.modules if m.startswith("lance_namespace_urllib3_client.api."))
print("api modules after opening a store:", len(api))
if sys.argv[2] == "deferred":
    import lance_namespace_urllib3_client as client

    # several threads asking at once all get the real package
    barrier, got = threading.Barrier(4), []
    def ask():
        barrier.wait()
        got.append(client.ApiClient)
    threads = [threading.Thread(target=ask) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(got) == 4 and len(set(got)) == 1, got
    from lance_namespace_urllib3_client import ApiClient, Configuration, TableApi

    assert client.__version__ and TableApi(ApiClient(Configuration(host="http://127.0.0.1:9")))
    assert not hasattr(client, "no_such_name")
    print("client works")
"""


def _run(tmp_path, name: str, mode: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIDCLIP_DEFER_")}
    done = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / name), mode], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_store_opens_without_the_rest_client_api_modules_and_the_client_loads_when_asked(tmp_path):
    out = _run(tmp_path, "a", "deferred")
    assert "api modules after opening a store: 0" in out and "client works" in out


@pytest.mark.parametrize("switch", ["VIDCLIP_DEFER_NAMESPACE_CLIENT", "VIDCLIP_DEFER_IMPORTS"])
def test_the_deferral_can_be_turned_off(tmp_path, switch):
    out = _run(tmp_path, "b", "eager", **{switch: "0"})
    n = int(out.split("api modules after opening a store:")[1].split()[0])
    assert n > 0  # lancedb's own import: every API module


VISION = r"""
import json, sys, threading
sys.path.insert(0, sys.argv[1])
import numpy as np
from conftest import TINY
from vidclip.config import ModelConfig
from vidclip.model.encoder import Encoder

enc = Encoder.load(TINY)
frames = [np.random.default_rng(i).integers(0, 256, (90, 160, 3), dtype=np.uint8) for i in range(3)]
vectors = enc.encode_frames(frames).numpy()
text = enc.encode_text(["a dog on a beach"]).numpy()
report = {"vectors": vectors.tolist(), "text": text.tolist(),
          "loaded": sorted(m for m in ("torch._dynamo", "timm.models", "torchvision.models.resnet",
                                       "torchvision.ops.roi_align", "torchvision.datasets") if m in sys.modules)}
import torch, torchvision, timm
from torchvision.ops import boxes  # a submodule by name

# several threads asking at once all get the real package
barrier, got = threading.Barrier(4), []
def ask():
    barrier.wait()
    got.append(torchvision.ops.nms)
threads = [threading.Thread(target=ask) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
assert len(got) == 4 and len(set(got)) == 1, got
assert torchvision.__version__ and timm.__version__
assert torchvision.ops.nms(torch.tensor([[0., 0, 4, 4], [0, 0, 4, 4.1]]), torch.tensor([1., .5]), .5).tolist() == [0]
assert boxes.box_area(torch.tensor([[0., 0, 2, 3]])).tolist() == [6.0]
assert torchvision.models.resnet18(num_classes=3).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
assert not hasattr(torchvision, "no_such_name")
# an open_clip model whose image tower is a timm model, built through vidclip
timm_tower = ModelConfig(name="vidclip-timm-tiny", pretrained="none", config_path=sys.argv[2])
assert Encoder.load(timm_tower).encode_frames(frames).shape == (3, 32)
print(json.dumps(report))
"""

TIMM_TOWER = {"embed_dim": 32,
              "vision_cfg": {"timm_model_name": "resnet18", "timm_model_pretrained": False, "timm_pool": "avg",
                             "timm_proj": "linear", "image_size": 64},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _vision(tmp_path, **env) -> dict:
    import json
    from pathlib import Path

    config = tmp_path / "vidclip-timm-tiny.json"
    config.write_text(json.dumps(TIMM_TOWER))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIDCLIP_DEFER_")}
    done = subprocess.run([sys.executable, "-c", VISION, str(Path(__file__).parent), str(config)],
                          env={**clean, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_open_clip_runs_without_torchvision_and_timm_models_and_they_work_when_asked(tmp_path):
    """A CLIP model from open_clip's own towers encodes frames and text without importing
    torchvision's or timm's model zoos, torchvision's ops or torch._dynamo; with the deferral off
    they are all imported, and the vectors are the same."""
    import numpy as np

    deferred, eager = _vision(tmp_path), _vision(tmp_path, VIDCLIP_DEFER_IMPORTS="0")
    assert deferred["loaded"] == []
    assert eager["loaded"] == ["timm.models", "torch._dynamo", "torchvision.datasets", "torchvision.models.resnet",
                               "torchvision.ops.roi_align"]
    np.testing.assert_array_equal(np.array(deferred["vectors"]), np.array(eager["vectors"]))
    np.testing.assert_array_equal(np.array(deferred["text"]), np.array(eager["text"]))
