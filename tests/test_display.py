"""vidclip.query.display.render_hits on real ingested hits (tiny model) and on hand-made hits."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

import vidclip
from conftest import LIBRARY_SPECS, SAMPLING, TINY
from vidclip.query import display
from vidclip.query.display import format_time, relative_url, render_hits
from vidclip.samples.synth import draw_frame, write_not_a_video

IMG = re.compile(r'<img src="data:image/jpeg;base64,([^"]+)"')
VIDEO_SRC = re.compile(r'<video controls preload="none" src="([^"]+)"')
SAME = 12.0  # mean abs difference (0..255) of a thumbnail and the frame it shows: codec + JPEG + resize
OTHER = 30.0  # ... and of a thumbnail and another scene


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, video_dir):
    lib = vidclip.open(tmp_path_factory.mktemp("display") / "db", model=TINY)
    lib.ingest([video_dir], SAMPLING, progress=False)
    return lib, video_dir


def cards(page: str) -> list[str]:
    return page.split('class="vidclip-hit"')[1:]


def thumb(card: str) -> np.ndarray:
    m = IMG.search(card)
    assert m, card[:300]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(1)))).convert("RGB"), dtype=np.float32)


def expected(spec, t: float, width: int) -> np.ndarray:
    img = Image.fromarray(draw_frame(spec, t))
    img = img.resize((width, round(img.height * width / img.width)), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def best_t(hit) -> float:
    t = getattr(hit, "best_t", None)
    return t if t is not None else (hit.start_s + hit.end_s) / 2


def hit(uri, start, end, t=None, score=0.5):
    return SimpleNamespace(video_id="v", uri=str(uri), start_s=start, end_s=end, score=score, best_t=t)


def test_real_hits_show_their_best_frame_and_moment(ingested):
    lib, root = ingested
    for name, spec in LIBRARY_SPECS.items():
        hits = lib.search(image=draw_frame(spec, 0.6), k=len(LIBRARY_SPECS), per_video=3)
        page = render_hits(hits, thumb_width=160)
        assert len(cards(page)) == len(hits) and len(IMG.findall(page)) == len(hits)
        for h, card in zip(hits, cards(page)):
            got = thumb(card)
            spec_h = LIBRARY_SPECS[str(h.uri)[len(str(root)) + 1 :]]
            want = expected(spec_h, best_t(h), 160)
            assert got.shape == want.shape, (h.uri, got.shape, want.shape)
            assert np.abs(got - want).mean() < SAME, h
            src = html.unescape(VIDEO_SRC.search(card).group(1))
            frag = src.rsplit("#t=", 1)[1].split(",")
            assert [float(x) for x in frag] == pytest.approx([h.start_s, h.end_s], abs=1e-3)
            assert src.startswith("file://")
            assert f"{format_time(h.start_s)}–{format_time(h.end_s)}" in card
            assert f"score {h.score:.4f}" in card


def test_nearest_frame_one_open_per_video(video_dir, monkeypatch):
    name = "h264_320x240.mp4"
    spec, path = LIBRARY_SPECS[name], video_dir / name
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **kw: opened.append(a[0]) or real_open(*a, **kw))
    # 1.0 and 3.0 are two scenes; 5.02 is not a frame time (fps 10): the nearest is 5.0; 0.95 and 1.0 both.
    times = [3.0, 1.0, 5.02, 0.95]
    page = render_hits([hit(path, t - 0.5, t + 0.5, t) for t in times], thumb_width=200)
    assert opened == [str(path)]
    thumbs = [thumb(c) for c in cards(page)]
    for t, got in zip(times, thumbs):
        t_frame = round(t * 10) / 10
        assert np.abs(got - expected(spec, t_frame, 200)).mean() < SAME, t
    assert np.abs(thumbs[0] - expected(spec, 1.0, 200)).mean() > OTHER  # it really discriminates


def test_far_apart_targets_seek(tmp_path, monkeypatch):
    from vidclip.samples.synth import VideoSpec, write_video

    spec = VideoSpec(duration_s=12.0, scene_seconds=2.0, seed=7, gop=10)
    path = write_video(tmp_path / "long.mp4", spec)
    monkeypatch.setattr(display, "SEEK_GAP_S", 1.0)
    times = [0.5, 7.2, 11.3, 4.1]
    page = render_hits([hit(path, 0, 12, t) for t in times], thumb_width=160)
    for t, card in zip(times, cards(page)):
        assert np.abs(thumb(card) - expected(spec, t, 160)).mean() < SAME, t


def test_rotated_video_thumbnail_is_upright(video_dir):
    name = "h264_rot90.mp4"
    spec = LIBRARY_SPECS[name]  # displayed 240x320 (portrait), stored 320x240 with a rotation tag
    page = render_hits([hit(video_dir / name, 2.0, 4.0, 3.0)], thumb_width=120)
    got = thumb(cards(page)[0])
    assert got.shape == (160, 120, 3)
    assert np.abs(got - expected(spec, 3.0, 120)).mean() < SAME


def test_missing_or_broken_file_gives_a_placeholder(tmp_path, video_dir):
    broken = write_not_a_video(tmp_path / "broken.mp4")
    ok = video_dir / "vp9_256x144.webm"
    hits = [hit(tmp_path / "gone.mp4", 0, 2, 1.0), hit(broken, 0, 2), hit(ok, 0, 2, 1.0), hit("s3://b/k.mp4", 0, 2)]
    page = render_hits(hits)
    cs = cards(page)
    assert len(cs) == 4
    assert "no thumbnail" in cs[0] and "file not found" in cs[0] and "<img" not in cs[0]
    assert "no thumbnail" in cs[1] and "<img" not in cs[1]
    assert IMG.search(cs[2])
    assert "no thumbnail" in cs[3] and 'src="s3://b/k.mp4#t=0,2"' in cs[3]


def test_file_name_is_escaped_and_uri_percent_encoded(tmp_path, video_dir):
    name = "<script>alert('x')<b>&.mp4"
    path = tmp_path / name
    shutil.copy(video_dir / "h264_320x240.mp4", path)
    page = render_hits([hit(path, 0.0, 2.0, 1.0)])
    assert "<script>" not in page and "<b>" not in page and "'x'" not in page
    assert html.escape(name) in page.replace("<wbr>", "")
    src = html.unescape(VIDEO_SRC.search(page).group(1))
    assert src == path.as_uri() + "#t=0,2" and "%3Cscript%3E" in src
    assert IMG.search(page)  # the odd name still decodes


def test_video_url_mapping_and_limits(tmp_path, video_dir):
    path = video_dir / "sub" / "h264_640x360.mp4"
    page = render_hits([hit(path, 1.25, 3.5, 2.0)] * 3, max_items=2, video_url=relative_url(video_dir, prefix="/files/"))
    assert len(cards(page)) == 2 and "1 more hit(s) not shown" in page
    assert 'src="/files/sub/h264_640x360.mp4#t=1.25,3.5"' in page
    outside = relative_url(tmp_path)(path.as_uri())
    assert outside == path.as_uri()
    assert render_hits([]).count("No hits") == 1
    # a hit without best_t: the middle of its moment
    plain = SimpleNamespace(video_id="v", uri=str(path), start_s=0.0, end_s=4.0, score=1.0)
    got = thumb(render_hits([plain], thumb_width=160))
    assert np.abs(got - expected(LIBRARY_SPECS["sub/h264_640x360.mp4"], 2.0, 160)).mean() < SAME


def test_clip_bounds_shown_when_they_differ(video_dir):
    h = hit(video_dir / "h264_320x240.mp4", 1.0, 1.5, 1.2)
    h.clip_start_s, h.clip_end_s = 0.0, 2.0
    assert "clip</span><span>00:00.0–00:02.0" in render_hits([h])


@pytest.mark.parametrize("t,text", [(0, "00:00.0"), (1.04, "00:01.0"), (59.96, "01:00.0"), (75.25, "01:15.3"), (0.25, "00:00.3"), (3725.5, "62:05.5")])
def test_format_time(t, text):
    assert format_time(t) == text
