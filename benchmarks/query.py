"""Query benchmark: exact vs ANN search latency and recall@10 on synthetic clip vectors, plus text
query end to end (tokenise + ViT-B-32 text tower on CPU + search + metadata fetch).

    python3 -m benchmarks.query --sizes 10000 100000 1000000 --json-out benchmarks/query_cpu.json

Vectors: a mixture of von-Mises-like Gaussian clusters on the unit sphere (dim 512), as CLIP
embeddings of video clips cluster by scene/topic; queries are fresh draws from the same mixture
(near the data, never equal to a stored row).  Rows go into a real vidclip Store (LanceDB) in bulk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import numpy as np
import pyarrow as pa

from benchmarks import corpus
from vidclip.store import index as vindex
from vidclip.store.store import Store
from vidclip.store.schema import OK, VIDEO_SCHEMA, frame_schema, segment_schema, vectors_array

DIM = 512
CLIPS_PER_VIDEO = 10
SEG_COLS = ["video_id", "clip_id", "start_s", "end_s", "n_frames", "_distance"]


class Mixture:
    """Clustered unit vectors: n_clusters centres, points = normalise(centre + sigma * N(0, I))."""

    def __init__(self, n_clusters: int, dim: int = DIM, sigma: float = 0.04, seed: int = 0):
        rng = np.random.default_rng(seed)
        c = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.sigma = sigma  # ||noise|| ~ sigma*sqrt(512) ~ 0.9 -> cosine to centre ~0.74
        self.weights = rng.dirichlet(np.full(n_clusters, 2.0))  # uneven cluster sizes

    def sample(self, n: int, rng) -> np.ndarray:
        ids = rng.choice(len(self.centres), size=n, p=self.weights)
        x = self.centres[ids] + self.sigma * rng.standard_normal((n, self.centres.shape[1])).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def fill_store(path: str, n: int, mix: Mixture, seed: int = 1, chunk: int = 100_000) -> Store:
    store = Store.open(path, create=True)
    store.ensure_vector_tables(DIM)
    tbl = store.table(store.segments["clip"])
    rng = np.random.default_rng(seed)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        ids = np.arange(lo, lo + m)
        tbl.add(pa.table({
            "video_id": pa.array([f"v{i // CLIPS_PER_VIDEO:08d}" for i in ids]),
            "clip_id": pa.array(ids % CLIPS_PER_VIDEO, pa.int32()),
            "start_s": pa.array((ids % CLIPS_PER_VIDEO) * 4.0),
            "end_s": pa.array((ids % CLIPS_PER_VIDEO) * 4.0 + 4.0),
            "n_frames": pa.array(np.full(m, 8), pa.int32()),
            "temporal": pa.array(["mean"] * m),
            "vector": vectors_array(mix.sample(m, rng)),
        }, schema=segment_schema(DIM)))
    n_videos = (n + CLIPS_PER_VIDEO - 1) // CLIPS_PER_VIDEO
    videos = pa.Table.from_pylist([{"video_id": f"v{i:08d}", "uri": f"/data/v{i}.mp4", "status": OK}
                                   for i in range(n_videos)], schema=VIDEO_SCHEMA)
    store.table("videos").add(videos)
    store.ensure_lookup_indexes()  # as the start of an ingest does
    store.optimize()  # compact the fragments left by the chunked writes (as the end of an ingest does)
    return store


def _pct(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(xs)}


def time_search(tbl, queries, nprobes=None, refine=None, exact=False, limit=10, ef=None):
    lat, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        query = tbl.search(q).distance_type("dot").limit(limit).with_row_id(True)
        if exact:
            query = query.bypass_vector_index()
        if nprobes:
            query = query.nprobes(nprobes)
        if refine:
            query = query.refine_factor(refine)
        if ef:
            query = query.ef(max(ef, limit * (refine or 1)))
        res = query.select(SEG_COLS).to_arrow()
        lat.append(time.perf_counter() - t0)
        found.append(set(res.column("_rowid").to_pylist()))
    return lat, found


def bench_size(n: int, root: str, index_types: list[str], n_queries: int, mix: Mixture, rng) -> tuple[dict, Store]:
    t0 = time.perf_counter()
    store = fill_store(os.path.join(root, f"s{n}"), n, mix)
    tbl = store.table(store.segments["clip"])
    out = {"rows": n, "write_s": round(time.perf_counter() - t0, 1)}
    queries = mix.sample(n_queries, rng)
    n_exact = n_queries if n <= 100_000 else min(n_queries, 40)
    lat, truth = time_search(tbl, queries[:n_exact], exact=True)
    out["exact"] = _pct(lat)  # LanceDB's flat scan
    if store.exact.fits(tbl):
        name = store.segments["clip"]
        t0 = time.perf_counter()
        store.search_vectors(name, queries[0], 10)
        load = time.perf_counter() - t0
        lat = []
        for q in queries[:n_exact]:
            t0 = time.perf_counter()
            store.search_vectors(name, q, 10)
            lat.append(time.perf_counter() - t0)
        out["exact_in_memory"] = {**_pct(lat), "first_query_s": round(load, 3)}  # vidclip.store.exact
        store.exact.clear()
    out["ann"] = {}
    for itype in index_types:
        params = vindex.index_params(n, DIM, itype)
        t0 = time.perf_counter()
        vindex.create_vector_index(tbl, params)
        build = time.perf_counter() - t0
        # calibrate on the store's own perturbed vectors (what `vidclip index` does), then check on
        # the held-out mixture queries
        t1 = time.perf_counter()
        chosen, cal_r = vindex.calibrate(tbl, itype, params["num_partitions"])
        nprobes, refine, ef = chosen.nprobes, chosen.refine_factor, chosen.ef
        cal_s = time.perf_counter() - t1
        try:
            tbl.prewarm_index(vindex.INDEX_NAME)
        except Exception as exc:  # noqa: BLE001
            out.setdefault("notes", []).append(f"prewarm_index failed for {itype}: {exc}")
        time_search(tbl, queries[:5], nprobes, refine, ef=ef)  # warm caches
        lat, found = time_search(tbl, queries, nprobes, refine, ef=ef)
        r = vindex.recall(truth, found[:n_exact])
        out["ann"][itype] = {**{k: v for k, v in params.items() if k != "vector_column_name"},
                             "nprobes": nprobes, "refine_factor": refine, "ef": ef, "build_s": round(build, 1),
                             "calibration_s": round(cal_s, 1), "calibration_recall_at_10": round(cal_r, 4),
                             "recall_at_10": round(r, 4), **_pct(lat)}
        print(json.dumps({"size": n, itype: out["ann"][itype]}), flush=True)
    return out, store


def add_frames(store: Store, n_clips: int, per_clip: int, mix: Mixture, seed: int = 2, chunk: int = 200_000) -> None:
    """`per_clip` frame vectors inside every clip of fill_store's layout (what moments read), then
    optimize() so the lookup indexes cover them, as the end of an ingest does."""
    tbl = store.table("frames")
    rng = np.random.default_rng(seed)
    n_videos = (n_clips + CLIPS_PER_VIDEO - 1) // CLIPS_PER_VIDEO
    per_video = CLIPS_PER_VIDEO * per_clip
    step = 4.0 / per_clip  # clips are 4 s long
    videos_per_chunk = max(1, chunk // per_video)
    for lo in range(0, n_videos, videos_per_chunk):
        vids = np.arange(lo, min(n_videos, lo + videos_per_chunk))
        t = (np.arange(per_video) + 0.5) * step
        tbl.add(pa.table({
            "video_id": pa.array([f"v{i:08d}" for i in np.repeat(vids, per_video)]),
            "t": pa.array(np.tile(t, len(vids))),
            "vector": vectors_array(mix.sample(len(vids) * per_video, rng)),
            "norm": pa.array(np.ones(len(vids) * per_video, np.float32)),
        }, schema=frame_schema(DIM)))
    store.optimize()


def bench_text(store: Store, n_queries: int, threads: int | None) -> dict:
    """Text query end to end, as Library.search runs it: tokenise + text tower (context cut after
    EOT) + exact search + per-video metadata (+ moments from the frames table, the default).  With
    the store's in-memory exact search and video directory (the default), also without moments
    (the issue's "tokenise, encode, search, fetch metadata"), and with LanceDB doing both."""
    import torch

    from vidclip.config import ModelConfig
    from vidclip.model.encoder import Encoder
    from vidclip.query.search import search_vector

    if threads:
        torch.set_num_threads(threads)
    enc = Encoder.load(ModelConfig(name="ViT-B-32", pretrained="none", device="cpu"))
    texts = [f"a person {w} near a {o} at {t}" for w, o, t in zip(
        ["walking", "cooking", "running", "dancing", "swimming"] * 40, ["car", "dog", "river", "table", "tree"] * 40,
        ["night", "noon", "dawn", "dusk"] * 50)][:n_queries]
    with torch.inference_mode():
        full = torch.nn.functional.normalize(enc.model.encode_text(enc.tokenizer(texts[:8])).float(), dim=-1)
    max_diff = float((enc.encode_text(texts[:8]) - full).abs().max())
    out = {"torch_threads": torch.get_num_threads(), "text_tower_max_abs_diff_vs_full_context": max_diff,
           "path": "Encoder.encode_text + vidclip.query.search.search_vector (exact, k=10, moments on)"}
    budget = store.exact.max_bytes
    cases = [("in_memory_exact", budget, True), ("in_memory_exact_no_moments", budget, False),
             ("lancedb_flat", 0, True)]
    for label, max_bytes, moments in cases:
        store.exact.max_bytes = store.directory.max_bytes = max_bytes
        store.exact.clear()
        store.directory.clear()
        t0 = time.perf_counter()
        search_vector(store, enc.encode_text([texts[0]])[0].numpy(), k=10, moments=moments)
        first = time.perf_counter() - t0  # includes loading the in-memory copies
        enc_lat, e2e = [], []
        for t in texts:
            t0 = time.perf_counter()
            q = enc.encode_text([t])[0].numpy()
            t1 = time.perf_counter()
            hits = search_vector(store, q, k=10, moments=moments)
            e2e.append(time.perf_counter() - t0)
            enc_lat.append(t1 - t0)
            assert len(hits) == 10 and all((h.best_t is not None) == moments for h in hits)  # moments from frames
        out[label] = {"moments": moments, "first_query_s": round(first, 3), "encode": _pct(enc_lat), "e2e": _pct(e2e),
                      "search_and_fetch": _pct([a - b for a, b in zip(e2e, enc_lat)])}
        print(json.dumps({label: out[label]}), flush=True)
    store.exact.max_bytes = store.directory.max_bytes = budget
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--index-types", nargs="+", default=None,
                   help="index types to measure (default: IVF_FLAT IVF_HNSW_SQ up to 100k (IVF_PQ: see benchmarks/query_cpu_10k_pilot.json), the default type above)")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--text-queries", type=int, default=50)
    p.add_argument("--text-size", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the text tower (default: torch's, one per core)")
    p.add_argument("--frames-per-clip", type=int, default=4, help="frame vectors per clip in the text-query store (moments read them)")
    p.add_argument("--dir", default=None, help="where to write the stores (default: a temp dir)")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    result = {"machine": corpus.machine_info(), "dim": DIM, "k": 10, "data": "mixture of Gaussians on the sphere: sqrt(N) clusters, "
              "cosine ~0.74 to centre, Dirichlet(2) cluster sizes; queries fresh draws from the mixture", "sizes": []}
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        for n in args.sizes:
            mix = Mixture(max(16, int(math.sqrt(n))), seed=n)
            types = args.index_types or (["IVF_FLAT", "IVF_HNSW_SQ"] if n <= 100_000 else [vindex.DEFAULT_INDEX_TYPE])
            out, store = bench_size(n, root, types, args.queries, mix, rng)
            if n == args.text_size:
                store.table(store.segments["clip"]).drop_index(vindex.INDEX_NAME)  # exact, as the target says
                add_frames(store, n, args.frames_per_clip, mix)
                out["text_e2e_exact"] = bench_text(store, args.text_queries, args.threads)
            result["sizes"].append(out)
            print(json.dumps({k: v for k, v in out.items() if k != "ann"}), flush=True)
            store = None
            if args.json_out:
                corpus.write_result(args.json_out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
