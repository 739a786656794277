"""A real `vidclip serve` on a free loopback port, over a real store of the test library (with titles,
so hybrid search has text), for the API and browser tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SAMPLING, TINY, TINY_CONFIG

REPO = Path(__file__).resolve().parents[1]
TITLES = {"h264_320x240.mp4": "harbour at dusk", "vp9_256x144.webm": "forest trail",
          "h264_rot90.mp4": "portrait of a street", "sub/h264_640x360.mp4": "neon traffic at night"}


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    db: Path
    library: Path
    token: str | None = None


def build_store(root: Path, video_dir: Path) -> tuple[Path, Path]:
    """A private copy of the library ingested with titles: (store, library folder)."""
    import vidclip

    library = root / "library"
    shutil.copytree(video_dir, library)
    manifest = root / "library.jsonl"
    manifest.write_text("".join(json.dumps({"uri": str(library / name), "title": title}) + "\n"
                                for name, title in TITLES.items()))
    db = root / "db"
    report = vidclip.open(db, model=TINY).ingest([str(manifest)], SAMPLING, progress=False)
    assert report.ok == len(TITLES), report
    return db, library


def start(db: Path, library: Path, *extra: str, token: str | None = None, timeout: float = 300) -> Server:
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    env.pop("VIDCLIP_SERVE_TOKEN", None)
    cmd = [sys.executable, "-m", "vidclip", "serve", "--db", str(db), "--port", "0", "--model-config", TINY_CONFIG,
           *(["--token", token] if token else []), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # the server prints its URL once it is listening
        if line.startswith("http://") or proc.poll() is not None:
            break
    if not line.startswith("http://"):
        stop(proc)
        raise AssertionError(f"vidclip serve did not start: {proc.stderr.read()[-2000:]}")
    return Server(line.strip().rstrip("/"), proc, db, library, token)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory, video_dir):
    db, library = build_store(tmp_path_factory.mktemp("served"), video_dir)
    srv = start(db, library)
    yield srv
    stop(srv.proc)
