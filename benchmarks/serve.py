"""`vidclip serve` under load: text-search latency and throughput at 1, 4 and 16 concurrent clients.

    vidclip bench serve [--clips 100000] [--frames-per-clip 2] [--clients 1 4 16] [--requests 40]
    (or: python3 -m benchmarks.serve ...)

The store: one real video ingested with ViT-B-32 (random weights, CPU), which records the model,
sampling and temporal settings, then `--clips` synthetic 512-d clip vectors (benchmarks/query.py's
clustered mixture; 10 clips of 4 s per video), their frame vectors (for moments) and video vectors,
in bulk.  The server is the real `vidclip serve` in its own process on a free loopback port (model
loaded and the in-memory exact index filled before it listens).  The load generator is in this
process: each client is a thread with its own keep-alive HTTP connection, sending distinct text
queries (k=24, the page's default) back to back.  Reported per concurrency: p50/p99/mean latency,
requests/s, and where the time goes, from the server's own `timing_ms` (embed: the text tower
including any wait for a shared batch; search: the store; answer: the JSON) averaged over requests.
The client and the server share this machine's cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import corpus
from vidclip.cli.arguments import positive_int


def build_store(path: Path, clips: int, frames_per_clip: int, log=print) -> None:
    import pyarrow as pa

    import vidclip
    from benchmarks.query import CLIPS_PER_VIDEO, DIM, Mixture, add_frames, fill_store
    from vidclip.config import ModelConfig, SamplingConfig
    from vidclip.store.schema import segment_schema, vectors_array
    from vidclip.store.store import Store

    t0 = time.perf_counter()
    seed_video = corpus.ensure([corpus.CorpusVideo("h264", "360p", 5.0, 1)], corpus.DEFAULT_CACHE, log)[0]
    lib = vidclip.open(path, model=ModelConfig(name="ViT-B-32", pretrained="none", device="cpu"))
    lib.ingest([str(seed_video)], SamplingConfig(fps=1.0, clip_seconds=4.0), progress=False)
    mix = Mixture(n_clusters=max(16, clips // 2000))
    fill_store(str(path), clips, mix)
    store = Store.open(str(path))
    add_frames(store, clips, frames_per_clip, mix)
    n_videos = (clips + CLIPS_PER_VIDEO - 1) // CLIPS_PER_VIDEO
    # the videos fill_store wrote carry no counts: give them theirs (status's and search's integrity
    # check compares them with the rows), and one whole-video vector each
    store.table("videos").update(where="uri LIKE '/data/%'",
                                 values={"n_clips": CLIPS_PER_VIDEO, "n_frames": CLIPS_PER_VIDEO * frames_per_clip,
                                         "duration_s": 4.0 * CLIPS_PER_VIDEO, "codec": "h264"})
    rng = np.random.default_rng(3)
    seg = store.segments["video"]
    for lo in range(0, n_videos, 50_000):
        ids = range(lo, min(n_videos, lo + 50_000))
        store.table(seg).add(pa.table({
            "video_id": pa.array([f"v{i:08d}" for i in ids]), "clip_id": pa.array([-1] * len(ids), pa.int32()),
            "start_s": pa.array([0.0] * len(ids)), "end_s": pa.array([40.0] * len(ids)),
            "n_frames": pa.array([CLIPS_PER_VIDEO * frames_per_clip] * len(ids), pa.int32()),
            "temporal": pa.array(["mean"] * len(ids)), "vector": vectors_array(mix.sample(len(ids), rng)),
        }, schema=segment_schema(DIM)))
    store.optimize()
    log(f"store: {clips} clips, {n_videos} videos, {clips * frames_per_clip} frames in {time.perf_counter() - t0:.0f}s")


def _start(db: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.Popen([sys.executable, "-m", "vidclip", "serve", "--db", str(db), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"vidclip serve did not start: {proc.stderr.read()[-2000:]}")
    return proc, line.strip().rstrip("/")


QUERIES = [f"a person {w} near a {o} at {t}" for w in ("walking", "cooking", "running", "dancing", "swimming",
                                                       "reading", "singing", "driving")
           for o in ("car", "dog", "river", "table", "tree", "boat") for t in ("night", "noon", "dawn", "dusk")]


def load(url: str, clients: int, requests: int) -> dict:
    """`clients` threads, each sending `requests` text searches back to back on one connection."""
    import httpx

    latencies: list[float] = []
    timings: list[dict] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            http.get("/api/status")  # connect before the clock starts
            start.wait()
            for i in range(requests):
                q = QUERIES[(c * requests + i) % len(QUERIES)] + f" #{c}.{i}"
                t0 = time.perf_counter()
                r = http.get("/api/search", params={"q": q, "k": 24})
                dt = time.perf_counter() - t0
                r.raise_for_status()
                with lock:
                    latencies.append(dt)
                    timings.append(r.json()["timing_ms"])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = sorted(1000 * x for x in latencies)
    where = {k: round(statistics.mean(t.get(k, 0.0) for t in timings), 1) for k in ("embed", "search", "answer")}
    return {"clients": clients, "requests": len(ms), "wall_s": round(wall, 2), "requests_per_s": round(len(ms) / wall, 2),
            "p50_ms": round(ms[len(ms) // 2], 1), "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1),
            "mean_ms": round(statistics.mean(ms), 1), "server_mean_ms": where,
            "http_and_queueing_ms": round(statistics.mean(ms) - sum(where.values()), 1)}


def run(clips: int, frames_per_clip: int, clients: list[int], requests: int, log=print) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db"
        build_store(db, clips, frames_per_clip, log)
        t0 = time.perf_counter()
        proc, url = _start(db)
        started = time.perf_counter() - t0
        log(f"server up at {url} in {started:.1f}s (model loaded, exact index filled)")
        try:
            load(url, 1, 3)  # warm-up: first requests of each thread
            levels = []
            for c in clients:
                out = load(url, c, max(requests // c, 4) if c > 1 else requests)
                log(f"{c:>2} client(s): p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, {out['requests_per_s']} req/s; "
                    f"server {out['server_mean_ms']}")
                levels.append(out)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    base = levels[0]["requests_per_s"]
    for lv in levels:
        lv["throughput_vs_1_client"] = round(lv["requests_per_s"] / base, 2)
    return {"benchmark": "serve", "machine": corpus.machine_info(), "clips": clips, "frames_per_clip": frames_per_clip,
            "model": "ViT-B-32 (random weights, CPU)", "server_start_s": round(started, 1), "levels": levels}


def add_arguments(ap) -> None:
    ap.add_argument("--clips", type=positive_int, default=100_000)
    ap.add_argument("--frames-per-clip", type=positive_int, default=2)
    ap.add_argument("--clients", type=positive_int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=positive_int, default=64, help="requests per level (split among its clients)")
    ap.add_argument("--out", default="benchmarks/serve.json")


def cli(args) -> int:
    result = run(args.clips, args.frames_per_clip, args.clients, args.requests)
    for lv in result["levels"]:
        print(f"{lv['clients']:>2} clients: p50 {lv['p50_ms']} ms  p99 {lv['p99_ms']} ms  {lv['requests_per_s']} req/s "
              f"(x{lv['throughput_vs_1_client']} of 1 client)")
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
