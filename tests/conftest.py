"""Shared fixtures: real videos written with PyAV, and a tiny real open_clip architecture."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vidclip.config import ModelConfig, SamplingConfig
from raycluster import two_nodes  # noqa: F401 - a fixture: a two-raylet Ray cluster on loopback
from vidclip.samples.synth import VideoSpec, write_video

TINY_CONFIG = str(Path(__file__).parent / "models" / "vidclip-tiny.json")
TINY = ModelConfig(name="vidclip-tiny", pretrained="none", config_path=TINY_CONFIG)
# 2-second clips over videos whose content changes every 2 seconds: every clip is one distinct scene.
# (Random-weight embeddings share a strong common direction, so a clip mixing two scenes can sit
# closer to another video's clip than to a query from one of its own scenes.)
SAMPLING = SamplingConfig(fps=2.0, clip_seconds=2.0, max_frames=12)

LIBRARY_SPECS = {
    "h264_320x240.mp4": VideoSpec(codec="h264", width=320, height=240, duration_s=6.0, seed=1, scene_seconds=2.0),
    "vp9_256x144.webm": VideoSpec(codec="vp9", width=256, height=144, duration_s=4.0, seed=2, scene_seconds=2.0),
    "h264_rot90.mp4": VideoSpec(codec="h264", width=240, height=320, duration_s=4.0, seed=3, rotation=90, scene_seconds=2.0),
    "sub/h264_640x360.mp4": VideoSpec(codec="h264", width=640, height=360, duration_s=5.0, seed=4, scene_seconds=2.0),
}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """vidclip's own cache (checkpoint digests) in a folder of this run, not the user's ~/.cache
    (subprocesses the tests start inherit it)."""
    saved = os.environ.get("VIDCLIP_CACHE")
    os.environ["VIDCLIP_CACHE"] = str(tmp_path_factory.mktemp("vidclip-cache"))
    yield
    if saved is None:
        os.environ.pop("VIDCLIP_CACHE", None)
    else:
        os.environ["VIDCLIP_CACHE"] = saved


@pytest.fixture
def unreachable_hub(monkeypatch) -> str:
    """The Hugging Face hub pointed at a local port with nobody listening (connection refused at
    once): what an offline machine sees, without waiting for DNS.  Returns the endpoint."""
    import socket

    import huggingface_hub.constants as hfc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setattr(hfc, "ENDPOINT", endpoint)
    monkeypatch.setattr(hfc, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    return endpoint


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    """A small library: H.264 and VP9, three resolutions, one rotated, one in a subfolder."""
    root = tmp_path_factory.mktemp("videos")
    for name, spec in LIBRARY_SPECS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / name, spec)
    return root


@pytest.fixture
def videos(tmp_path, video_dir) -> Path:
    """A private copy of the library, free to modify."""
    dst = tmp_path / "videos"
    shutil.copytree(video_dir, dst)
    return dst


@pytest.fixture
def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    env["TQDM_DISABLE"] = "1"
    return env


@pytest.fixture
def busy_cores():
    """Both cores kept busy by two spinning processes for the test's duration: a loaded machine,
    as CI's and users' machines are."""
    import subprocess
    import sys

    # Ordinary time-shared spinners, whatever the test process's own scheduling class: a spinner
    # that inherited a real-time class (SCHED_FIFO) would never yield, and starve everything else.
    code = "import os\nos.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))\nwhile True: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    yield
    for p in spinners:
        p.kill()
        p.wait()
