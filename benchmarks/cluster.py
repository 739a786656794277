"""Ingest throughput on a two-raylet Ray cluster started here, against `--local`.

    vidclip bench cluster [--n 40] [--repeats 2] [--node-cpus 1] [--model ViT-B-32]
    (or: python3 -m benchmarks.cluster ...)

Corpus: n distinct 5 s 360p H.264 clips (benchmarks/corpus.py), 1 frame/s, random weights on CPU.
The cluster is two `ray start` raylets on loopback (token authentication on), `--node-cpus` CPUs
each; the job joins it with `--ray-address`, and its encoder actors and decode workers are sized by
the job's own rule (pipelines/options.py).  Both modes run the real CLI in a fresh process, into a
new store, with the model built on the clock in both (the --local process builds it in-process,
the Ray job in its actors).  The cluster's start is not on the clock.  Reported: median wall,
videos/s and frames/s per mode, the ratio ray / local, and what the rule gives for 8 nodes x 16 cores.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import corpus
from vidclip.cli.arguments import positive_int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(node_cpus: int, env: dict, tmp: str) -> tuple[str, list]:
    port = _free_port()
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--node-ip-address", "127.0.0.1", "--num-cpus",
           str(node_cpus), "--disable-usage-stats"]
    subprocess.run([*ray, "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", tmp],
                   env=env, check=True, capture_output=True, timeout=180)
    second = subprocess.Popen([*ray, "--address", f"127.0.0.1:{port}", "--block"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    code = (f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        if out.returncode == 0 and out.stdout.split() and int(out.stdout.split()[-1]) >= 2:
            return address, [second]
        time.sleep(2)
    raise RuntimeError("the second raylet never joined")


def _stop_cluster(token: str, tmp: str, procs: list) -> None:
    """SIGKILL this cluster's processes only (found by its token or temp dir): never `ray stop`."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    mark = f"RAY_AUTH_TOKEN={token}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                ours = mark in fh.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                ours = ours or tmp.encode() in fh.read()
            if ours:
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            continue
    shutil.rmtree(tmp, ignore_errors=True)


def _ingest(folder: Path, model: str, env: dict, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as db:
        cmd = [sys.executable, "-m", "vidclip", "ingest", str(folder), "--db", db, "--model", model,
               "--pretrained", "none", "--device", "cpu", "--json", *extra]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return {"wall_s": wall, "ok": report["ok"], "frames": report["frames"], "stderr": done.stderr.strip().splitlines()}


def run(n: int, repeats: int, node_cpus: int, model: str, cache: Path = corpus.DEFAULT_CACHE, log=print) -> dict:
    from pipelines.options import JobOptions

    paths = corpus.ensure(corpus.ingest_set(n), cache, log)
    token = secrets.token_hex(32)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, TQDM_DISABLE="1")
    env.pop("RAY_ADDRESS", None)
    tmp = f"/tmp/vcb{os.getpid()}"
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        for p in paths:
            os.symlink(p, Path(folder) / Path(p).name)
        address, procs = _start_cluster(node_cpus, env, tmp)
        try:
            for r in range(repeats):
                for mode, extra in (("local", ["--local"]), ("two_raylets", ["--ray-address", address])):
                    out = _ingest(Path(folder), model, env, extra)
                    out.update(mode=mode, repeat=r)
                    log(f"{mode}: {out['wall_s']:.1f}s, {out['ok']} ok, {out['frames']} frames")
                    runs.append(out)
        finally:
            _stop_cluster(token, tmp, procs)
    summary = {}
    for mode in ("local", "two_raylets"):
        walls = [r["wall_s"] for r in runs if r["mode"] == mode]
        frames = next(r["frames"] for r in runs if r["mode"] == mode)
        wall = statistics.median(walls)
        summary[mode] = {"wall_s": wall, "videos_per_s": n / wall, "frames_per_s": frames / wall}
    summary["ray_over_local"] = summary["local"]["wall_s"] / summary["two_raylets"]["wall_s"]
    options = JobOptions()
    rule = {}
    for name, (cpus, node) in {"this_cluster": (2 * node_cpus, node_cpus), "8_nodes_x_16_cores": (128, 16),
                               "one_16_core_machine": (16, 16)}.items():
        actors, threads = options.resolved_encoders(0, cpus, node)
        rule[name] = {"encoder_actors": actors, "threads_each": threads,
                      "decode_workers": options.resolved_decode_workers(cpus, actors * threads)}
    return {"benchmark": "cluster", "machine": corpus.machine_info(), "n": n, "model": model, "node_cpus": node_cpus,
            "runs": runs, "summary": summary, "rule": rule}


def add_arguments(ap) -> None:
    ap.add_argument("--n", type=positive_int, default=40)
    ap.add_argument("--repeats", type=positive_int, default=2)
    ap.add_argument("--node-cpus", type=positive_int, default=1, help="CPUs per raylet (2 raylets)")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--out", default="benchmarks/cluster.json")


def cli(args) -> int:
    result = run(args.n, args.repeats, args.node_cpus, args.model)
    s = result["summary"]
    print(f"--local {s['local']['videos_per_s']:.2f} videos/s, two raylets {s['two_raylets']['videos_per_s']:.2f} "
          f"videos/s (ray / local = {s['ray_over_local']:.2f}x); rule at 8 x 16 cores: {result['rule']['8_nodes_x_16_cores']}")
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
