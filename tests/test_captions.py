"""Caption files (JSONL, CSV, JSON, MSR-VTT's published layout) and matching captions to stored videos."""

from __future__ import annotations

import csv
import json

import pytest

from vidclip.learn import captions
from vidclip.errors import InputError
from vidclip.store.store import Batch, Store
from vidclip.store.schema import OK


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# -- reading ----------------------------------------------------------------------------------------
def test_jsonl_rows_with_and_without_spans(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"video": "a.mp4", "caption": "a dog   runs"},
        {"video_id": "abc", "sentence": "a cat", "start_s": 1, "end_s": 2.5},
    ])
    got = captions.read(path)
    assert [(c.video, c.text, c.start_s, c.end_s) for c in got] == [
        ("a.mp4", "a dog runs", None, None), ("abc", "a cat", 1.0, 2.5)]
    assert got[1].where.endswith("c.jsonl:2")


def test_csv_generic_and_msrvtt_test_list(tmp_path):
    generic = write_csv(tmp_path / "g.csv", ["video", "caption", "start_s", "end_s"],
                        [["x.mp4", "one", "", ""], ["y.mp4", "two", "0", "3"]])
    assert [(c.video, c.text, c.start_s) for c in captions.read(generic)] == [("x.mp4", "one", None), ("y.mp4", "two", 0.0)]
    # MSR-VTT 1k-A test list (CLIP4Clip reads its video_id and sentence columns)
    jsfusion = write_csv(tmp_path / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
                         [["ret0", "msr9770", "video9770", "a person is connecting something to system"],
                          ["ret1", "msr7606", "video7606", "a little girl does gymnastics"]])
    assert [(c.video, c.text) for c in captions.read(jsfusion)] == [
        ("video9770", "a person is connecting something to system"), ("video7606", "a little girl does gymnastics")]


def _msrvtt_data(tmp_path):
    data = {
        "info": {}, "videos": [{"video_id": f"video{i}", "category": 0, "split": "train"} for i in range(3)],
        "sentences": [
            {"video_id": "video0", "caption": "a car drives", "sen_id": 0},
            {"video_id": "video1", "caption": "a man sings", "sen_id": 1},
            {"video_id": "video0", "caption": "a red car", "sen_id": 2},
            {"video_id": "video2", "caption": "a cat sleeps", "sen_id": 3},
        ],
    }
    path = tmp_path / "MSRVTT_data.json"
    path.write_text(json.dumps(data))
    return path


def test_msrvtt_data_json_and_train_split(tmp_path):
    data = _msrvtt_data(tmp_path)
    assert [(c.video, c.text) for c in captions.read(data)] == [
        ("video0", "a car drives"), ("video1", "a man sings"), ("video0", "a red car"), ("video2", "a cat sleeps")]
    # a split CSV with only video_id takes every sentence of its videos from MSRVTT_data.json beside it
    split = write_csv(tmp_path / "MSRVTT_train.9k.csv", ["video_id"], [["video0"], ["video2"]])
    assert [(c.video, c.text) for c in captions.read(split)] == [
        ("video0", "a car drives"), ("video0", "a red car"), ("video2", "a cat sleeps")]


def test_split_without_data_json_or_sentences_is_refused(tmp_path):
    lonely = tmp_path / "alone"
    lonely.mkdir()
    split = write_csv(lonely / "MSRVTT_train.9k.csv", ["video_id"], [["video0"]])
    with pytest.raises(InputError, match="MSRVTT_data.json"):
        captions.read(split)
    _msrvtt_data(lonely)
    split = write_csv(lonely / "MSRVTT_train.9k.csv", ["video_id"], [["video0"], ["video99"]])
    with pytest.raises(InputError, match="video99"):
        captions.read(split)


@pytest.mark.parametrize("rows, needle", [
    ([{"caption": "x"}], "no 'video'"),
    ([{"video": "a", "caption": "  "}], "no 'caption'"),
    ([{"video": "a", "caption": "x", "start_s": 1}], "both start_s and end_s"),
    ([{"video": "a", "caption": "x", "start_s": 3, "end_s": 2}], "start_s < end_s"),
    ([{"video": "a", "caption": "x", "start_s": "soon", "end_s": 2}], "number of seconds"),
])
def test_bad_rows_name_file_and_line(tmp_path, rows, needle):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"video": "ok", "caption": "fine"}, *rows])
    with pytest.raises(InputError, match=needle) as info:
        captions.read(path)
    assert "bad.jsonl:2" in str(info.value) and "\n" not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such caption file"):
        captions.read(tmp_path / "missing.jsonl")
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(InputError, match="unknown caption file type"):
        captions.read(tmp_path / "c.txt")
    (tmp_path / "broken.jsonl").write_text('{"video": "a", \n')
    with pytest.raises(InputError, match="broken.jsonl:1"):
        captions.read(tmp_path / "broken.jsonl")
    write_csv(tmp_path / "nohead.csv", ["clip", "caption"], [["a", "b"]])
    with pytest.raises(InputError, match="no 'video'"):
        captions.read(tmp_path / "nohead.csv")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="holds no caption"):
        captions.read(tmp_path / "empty.jsonl")


# -- matching ---------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    """A store whose videos/sources tables know four videos (no vectors needed to match names)."""
    store = Store.open(str(tmp_path / "db"), create=True)
    uris = {"v0": "/data/msrvtt/video0.mp4", "v1": "/data/msrvtt/video1.webm", "v2": "/data/a/clip.mp4",
            "v3": "/data/b/clip.mp4", "vbad": "/data/msrvtt/video7.mp4"}
    videos = [{"video_id": vid, "uri": uri, "status": OK if vid != "vbad" else "failed"} for vid, uri in uris.items()]
    sources = [{"uri": uri, "video_id": vid, "size": 1, "mtime_ns": 1, "status": v["status"]}
               for (vid, uri), v in zip(uris.items(), videos)]
    sources.append({"uri": "/copies/video0_copy.mp4", "video_id": "v0", "size": 1, "mtime_ns": 1, "status": OK})
    store.commit(Batch(videos=videos, sources=sources, frames=[], clips=[], video_vectors=[], replaced=[]))
    return store


def _caps(*videos):
    return [captions.Caption(video=v, text=f"about {v}", where=f"caps:{i}") for i, v in enumerate(videos, 1)]


def test_match_by_id_uri_name_and_msrvtt_stem(store):
    got = captions.match(_caps("v2", "/data/b/clip.mp4", "video0", "video1.webm", "video0_copy"), store)
    assert [p.video_id for p in got.pairs] == ["v2", "v3", "v0", "v1", "v0"]
    assert got.skipped == 0


def test_unknown_video_is_named_or_skipped(store):
    with pytest.raises(InputError, match=r"caps:2: .*'video42'.*--skip-missing"):
        captions.match(_caps("video0", "video42"), store)
    got = captions.match(_caps("video0", "video42", "video42", "video7"), store, skip_missing=True)
    assert [p.video_id for p in got.pairs] == ["v0"]
    assert got.skipped == 3 and set(got.missing) == {"video42", "video7"}  # video7 failed: not ok, not matched
    with pytest.raises(InputError, match="no caption refers"):
        captions.match(_caps("video42"), store, skip_missing=True)


def test_ambiguous_file_name_is_refused(store):
    with pytest.raises(InputError, match="matches 2 stored videos"):
        captions.match(_caps("clip.mp4"), store)


def test_load_resolves_relative_paths_from_the_caption_file(tmp_path, store):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    rows = [{"video_id": vid, "uri": str(d / "same.mp4"), "status": OK} for vid, d in (("va", a), ("vb", b))]
    srcs = [{"uri": r["uri"], "video_id": r["video_id"], "size": 1, "mtime_ns": 1, "status": OK} for r in rows]
    store.commit(Batch(videos=rows, sources=srcs, frames=[], clips=[], video_vectors=[], replaced=[]))
    write_jsonl(a / "c.jsonl", [{"video": "same.mp4", "caption": "here"},
                                {"video": "../b/same.mp4", "caption": "there", "start_s": 0, "end_s": 1}])
    got = captions.load(a / "c.jsonl", store)  # "same.mp4" alone is ambiguous; next to the file it is not
    assert got.pairs == [captions.Pair("va", "here"), captions.Pair("vb", "there", 0.0, 1.0)]
