"""The benchmark plumbing (no timing assertions: numbers are reported, never asserted)."""

import argparse
import json

import numpy as np

from benchmarks import decode as bench_decode

from benchmarks import corpus
from vidclip.cli import bench as bench_cli
from vidclip.ingest.probe import probe


def _parser():
    ap = argparse.ArgumentParser()
    bench_cli.add_parsers(ap.add_subparsers(dest="command"))
    return ap


def test_cli_parses_each_benchmark():
    ap = _parser()
    a = ap.parse_args(["bench", "decode", "--quick", "--repeats", "1", "--out", "x.json"])
    assert (a.command, a.bench, a.quick, a.repeats, a.out) == ("bench", "decode", True, 1, "x.json")
    a = ap.parse_args(["bench", "encode", "--models", "ViT-B-32", "--batch-sizes", "1", "8"])
    assert a.models == ["ViT-B-32"] and a.batch_sizes == [1, 8]
    a = ap.parse_args(["bench", "ingest", "--n", "10", "100"])
    assert a.n == [10, 100] and a.worker is None
    assert set(bench_cli.COMMANDS) == {"bench"}


def test_corpus_video_is_written_once_with_its_keyframe_interval(tmp_path):
    v = corpus.CorpusVideo("h264", "360p", 3, 1, fps=10)
    (path,) = corpus.ensure([v], tmp_path, log=lambda *_: None)
    mtime = path.stat().st_mtime_ns
    assert corpus.ensure([v], tmp_path, log=lambda *_: None) == [path] and path.stat().st_mtime_ns == mtime
    pr = probe(str(path), 1 << 40)
    assert (pr.info.width, pr.info.height, pr.info.n_frames) == (640, 360, 30)
    np.testing.assert_allclose(pr.timeline[pr.keyframes], [0.0, 1.0, 2.0])


def test_machine_info_and_result_file(tmp_path):
    info = corpus.machine_info()
    assert {"cpu_count", "av", "decord", "torch", "python"} <= set(info)
    out = corpus.write_result(tmp_path / "r.json", {"machine": info, "x": np.float64(1.5)})
    assert json.loads(out.read_text())["machine"]["cpu_count"] == info["cpu_count"]


def test_decode_cases_read_the_planned_frames(tmp_path):
    (path,) = corpus.ensure([corpus.CorpusVideo("h264", "360p", 4, 1, fps=10)], tmp_path, log=lambda *_: None)
    pr = probe(str(path), 1 << 40)
    size = bench_decode.decode_size(pr.info.width, pr.info.height)
    assert size == (398, 224)
    for case in ("full", "uniform12", "fps1", "keyframes"):
        plan = bench_decode._plan(pr, case)
        for dec, seek in (("pyav", "never"), ("pyav", "auto"), ("decord", "-")):
            r = bench_decode._read(str(path), pr, plan, dec, seek, size)
            assert r["frames"] == len(plan.frame_index) and r["missing"] == 0
    rows = [{"video": "v", "case": c, "decoder": "pyav", "seek": "never", "wall_s": w, "cpu_s": w}
            for c, w in (("full", 4.0), ("uniform12", 1.0), ("fps1", 2.0), ("keyframes", 0.5))]
    s = bench_decode.summarize(rows)["v"]
    assert s["uniform12"]["speedup_cpu_vs_full"] == 4.0 and s["keyframes"]["speedup_wall_vs_full"] == 8.0


def test_gpu_bench_corpus_copies_are_distinct_files_with_the_same_frames(tmp_path):
    from benchmarks import gpu as bench_gpu
    from vidclip.ingest.manifest import content_id

    paths = bench_gpu.make_corpus(tmp_path, n=3, duration_s=1.0, bases=2, log=lambda *_: None)
    assert len(paths) == 3 and paths[2].name.startswith("copy0002_")
    assert len({content_id(str(p)) for p in paths}) == 3  # distinct bytes: distinct video ids
    a, b = probe(str(paths[0]), 1 << 40), probe(str(paths[2]), 1 << 40)  # copy 2 remuxes base 0
    np.testing.assert_allclose(a.timeline, b.timeline)
    assert a.info.n_frames == b.info.n_frames == 30


def test_gpu_bench_derives_decode_cores_per_gpu():
    from benchmarks import gpu as bench_gpu

    result = {
        "encode": [{"model": "ViT-B-32", "variant": "bf16", "batch_size": 256, "e2e_images_per_s": 8000.0},
                   {"model": "ViT-B-32", "variant": "bf16", "batch_size": 512, "e2e_images_per_s": 10000.0},
                   {"model": "ViT-B-32", "variant": "fp16", "batch_size": 512, "e2e_images_per_s": 99999.0}],
        "decode": [{"workers": 1, "per_worker_frames_per_s": 20.0, "children_cpu_s": 10.0, "sampled_frames": 200},
                   {"workers": 15, "per_worker_frames_per_s": 12.5, "children_cpu_s": 70.0, "sampled_frames": 1000}],
    }
    d = bench_gpu.derive(result, "ViT-B-32", 256)
    assert d["encode_e2e_images_per_s"] == 10000.0 and d["at_batch"] == 512  # bf16 only, best batch
    assert d["decode_processes_per_gpu"] == 800.0  # 10,000 / 12.5 (the widest decode run)
    assert abs(d["decode_cores_per_gpu"] - 700.0) < 1e-9  # 10,000 x 70 / 1000 CPU-s per frame


def test_memory_bench_measures_each_length_in_its_own_process(tmp_path):
    """`vidclip bench memory` on two short lengths with the test model: each case ingests its video
    in a fresh process and reports that process's and its decode child's peak."""
    from benchmarks import memory as bench_memory
    from conftest import TINY_CONFIG

    result = bench_memory.run([0.05, 0.1], False, "vidclip-tiny", TINY_CONFIG, cache=tmp_path, log=lambda *_: None)
    cases = result["cases"]
    assert [(c["ok"], c["frames"], c["width"], c["height"]) for c in cases] == [(1, 3, 160, 120), (1, 6, 160, 120)]
    assert all(c["driver_mb"] > 50 and c["child_mb"] > 10 for c in cases)  # torch alone is more than this
    longer = cases[1]["video"]
    assert set(result["ratios"]) == {longer}
    assert result["ratios"][longer]["driver_mb"] == round(cases[1]["driver_mb"] / cases[0]["driver_mb"], 3)


def test_pan_corpus_with_encoder_defaults_has_b_frames_and_scene_keyframes(tmp_path):
    """The peer corpus's content and libx264 defaults: B-frames (packets reordered) and a
    keyframe at each scene change; bframes=0 gives a stream in presentation order."""
    v = corpus.CorpusVideo("h264", "120p", 4, None, fps=30, scene_s=2.0, content="pan", preset="veryfast")
    flat = corpus.CorpusVideo("h264", "120p", 4, None, fps=30, scene_s=2.0, content="pan", preset="veryfast", bframes=0)
    assert v.name != flat.name and "gopdefault" in v.name
    a, b = corpus.ensure([v, flat], tmp_path, log=lambda *_: None)
    pa, pb = probe(str(a), 1 << 40), probe(str(b), 1 << 40)
    assert pa.reordered and not pb.reordered
    assert pa.info.n_frames == pb.info.n_frames == 120
    assert set(pa.timeline[pa.keyframes]) >= {0.0, 2.0}  # a new texture at 2 s: a scene-cut keyframe


def test_peer_bench_measures_a_whole_process_tree():
    """CPU and summed RSS come from every process of the tree, not just the one started."""
    import sys

    from benchmarks.peer import measure

    child = "import numpy as np, time; a = np.ones(200_000_000 // 8); t = time.process_time(); " \
            "exec('while time.process_time() - t < 0.5: pass'); time.sleep(0.5)"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True); print('done')"
    res = measure([sys.executable, "-c", code])
    assert res["stdout"].strip() == "done"
    assert res["cpu_s"] >= 0.5  # the grandchild's busy half second is counted
    # split into user and system time (the busy loop counts both: under load, faulting in the 200 MB
    # array took 2.2 s of system time here)
    assert res["user_s"] + res["sys_s"] == res["cpu_s"] and res["user_s"] > 0 and res["sys_s"] > 0
    # page faults of the whole tree: two interpreters and numpy make thousands (huge pages may map
    # the 200 MB array in a few hundred)
    assert res["minor_faults"] >= 2000
    assert res["peak_rss_sum_mb"] >= 190 and res["peak_rss_mb"] >= 190


def test_peer_bench_summary_and_missing_peer(tmp_path):
    from benchmarks import peer

    def r(wall, cpu):
        return {"wall_s": wall, "cpu_s": cpu, "user_s": cpu * 0.75, "sys_s": cpu * 0.25, "minor_faults": 1000,
                "frames_out": 240, "peak_rss_mb": 1000.0, "peak_rss_sum_mb": 3000.0}

    runs = {"720p": {"vidclip": [r(10, 20), r(12, 22), r(11, 21)], "clip-video-encode": [r(20, 40), r(21, 42), r(19, 38)]}}
    parts = {"720p": [{"pipeline": {"wall_s": 9.0}, "decode_only": {"wall_s": 6.0}, "encode_only": {"wall_s": 4.0}}]}
    s = peer.summarize(runs, parts)["720p"]
    assert s["vidclip"]["cpu_s"] == 21 and s["clip-video-encode"]["cpu_s"] == 40
    assert abs(s["cpu_per_frame_ratio_vs_peer"] - 21 / 40) < 1e-9 and s["equal_frames_out"]
    assert abs(s["ingest_wall_over_parts"] - 0.9) < 1e-9
    assert s["clip-video-encode"]["sys_s"] == 10 and s["vidclip"]["user_s"] == 21 * 0.75
    assert "| 8 x 30 s 720p | clip-video-encode | 20.0 s | 40.0 | 30.0 / 10.0 |" in peer.table(peer.summarize(runs, parts))
    # a python that cannot import clip-video-encode: the command measures vidclip alone and says how to add it
    for name, status in (("without", 1), ("with", 0)):
        fake = tmp_path / f"python_{name}"
        fake.write_text(f"#!/bin/sh\nexit {status}\n")
        fake.chmod(0o755)
        assert peer.peer_importable(str(fake)) == (status == 0)
    assert "--no-deps" in peer.INSTALL_PEER and "--peer-python" in peer.INSTALL_PEER


def test_shots_bench_scores_hard_cuts_apart_from_dissolves():
    from benchmarks.shots import hard_cut_f1, table
    from vidclip.samples.shots import Boundary

    truth = [Boundary("cut", 3.4, 3.4), Boundary("dissolve", 10.0, 11.0), Boundary("cut", 20.0, 20.0)]
    assert hard_cut_f1([3.4, 10.5, 20.0], truth) == 1.0  # the dissolve's detection is neither hit nor false cut
    assert hard_cut_f1([3.4, 15.0, 20.0], truth) == 0.8  # 15.0 is a false cut
    row = {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "hard_cut_f1": 1.0, "dissolve_recall": 0.0, "extra_decode_cpu_vs_fixed": 2.0}
    assert "| d | 1.00 | 0.50 | 0.67 | 1.00 | 0.00 | 2.00x |" in table({"d": row})


# -- the hard-data ANN benchmark (issue 21) ----------------------------------------------------------
def test_hard_data_is_deterministic_whatever_the_chunking():
    from benchmarks.query_hard import HardData

    a, b = HardData(), HardData()
    whole = np.concatenate([x for _, x in a.chunks(3000, chunk=3000)])
    pieces = np.concatenate([x for _, x in b.chunks(3000, chunk=700)])  # blocks of 1024 rows cut across
    assert whole.shape == (3000, 512) and whole.dtype == np.float32
    np.testing.assert_array_equal(whole, pieces)
    np.testing.assert_array_equal(a.rows(1000, 1100), whole[1000:1100])
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a.queries(5), b.queries(5))
    assert not np.array_equal(a.queries(5), a.queries(5, seed=1))


def test_hard_queries_are_out_of_distribution():
    from benchmarks.query_hard import HardData, median_top1

    data = HardData()
    ood = median_top1(data.queries(100), data, 3000)
    near = median_top1(data.in_distribution_queries(100), data, 3000)
    assert 0.34 <= ood <= 0.44  # 0.38 at 3k rows, ~0.40 at 100k
    assert near > ood + 0.2  # fresh draws from the data's own distribution: ~0.75
    assert 0.6 < data.top_variance(20) < 0.8  # a decaying spectrum: the top 20 of 512 directions dominate


def test_streamed_exact_topk_is_a_brute_force_sort():
    from benchmarks.query_hard import HardData, exact_topk

    data = HardData()
    x, q = data.rows(0, 3000), data.queries(20)
    ids, scores = exact_topk(q, data.chunks(3000, chunk=700), k=10)
    expect = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]  # (20, 10)
    np.testing.assert_array_equal(ids, expect)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, expect, axis=1), rtol=1e-6)


def test_ann_configs_parse_and_ladders_respect_partitions_and_ef():
    from benchmarks import ann

    c = ann.IndexConfig.parse("hnsw_sq:partitions=2,m=16,dtype=f16")
    assert (c.kind, c.partitions, c.m, c.dtype, c.hnsw) == ("hnsw_sq", 2, 16, "f16", True)
    assert ann.IndexConfig.parse(c.label) == c
    assert type(ann.IndexConfig.parse("ivf_rq:bits=4").lance_config()).__name__ == "IvfRq"
    for bad in ("ivf_xx", "ivf_pq:bogus=1", "ivf_flat:dtype=f64"):
        try:
            ann.IndexConfig.parse(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    flat = ann.ladders(ann.IndexConfig("ivf_flat", 4), 4, [1, 4, 16], [0, 10], [64])
    assert flat == [[ann.Setting(1), ann.Setting(4)]]  # no refine on raw vectors; nprobes capped at 4
    hnsw = ann.ladders(c, 2, [1, 2], [0, 10], [64, 256])
    assert [s.ef for s in hnsw[-1]] == [256]  # ef 64 < k x refine = 100 is refused by Lance
    a = _parser().parse_args(["bench", "ann", "--size", "2000", "--configs", "ivf_flat:partitions=4", "--ef", "64"])
    assert (a.size, a.configs, a.ef, a.queries) == (2000, ["ivf_flat:partitions=4"], [64], 200)


def test_ann_sweep_reaches_full_recall_only_with_every_partition(tmp_path, monkeypatch):
    from benchmarks import ann

    monkeypatch.setenv("LANCE_CPU_THREADS", "1")
    result = ann.run(2000, [ann.IndexConfig("ivf_flat", 4)], str(tmp_path), n_queries=20, nprobes=[1, 4],
                     full_sweep=True, check_flat=5, warmup=1, apart=False, log=lambda *_: None)
    assert result["lance_cpu_threads"] == "1" and result["tables"]["f32"]["flat_search_agreement_with_exact"] == 1.0
    (c,) = result["configs"]
    by_probe = {s["nprobes"]: s["recall_at_10"] for s in c["settings"]}
    assert by_probe[4] == 1.0 and by_probe[1] < 0.9  # IVF_FLAT over all 4 partitions is exact
    assert c["best"]["nprobes"] == 4 and c["index_type"] == "IVF_FLAT" and c["index_mb"] > 0
    assert "| ivf_flat:partitions=4 |" in ann.markdown(result)
