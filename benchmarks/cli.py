"""Cold start of the command line: what a daily user waits for each `vidclip` call.

    vidclip bench cli [--repeats 5] [--model ViT-B-32] [--source DIR] [--out benchmarks/cli.json]
    (or: python3 -m benchmarks.cli ...)

One store with one real video, ingested with `--model` (random weights: this machine has no
network).  Each command runs `--repeats` times in a fresh interpreter (`python3 -m vidclip ...`, as
the console script does), back to back; reported per command: median wall, median CPU (user +
system of the process and its children), and which heavy modules the process imported (torch,
open_clip, lancedb, ray).  `--source DIR` runs another checkout's vidclip (e.g. a worktree of an
older commit) against the same store, for before/after numbers; the store is built by this one.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import corpus
from vidclip.cli.arguments import positive_int

HEAVY = ("torch", "open_clip", "lancedb", "ray")
# The heavy modules are reported by an atexit handler: the program ends with os._exit after its
# atexit handlers (vidclip/cli/main.py), so a `finally` would never print.
PROBE = ("import atexit, runpy, sys; sys.argv = ['vidclip'] + sys.argv[1:]\n"
         "atexit.register(lambda: print('HEAVY', ','.join(m for m in %r if m in sys.modules), file=sys.stderr))\n"
         "runpy.run_module('vidclip', run_name='__main__')\n" % (HEAVY,))


def commands(db: str, model: str) -> dict[str, list[str]]:
    return {
        "--help": ["--help"],
        "status": ["status", "--db", db],
        "list": ["list", "--db", db],
        "search (bad -k)": ["search", "a dog", "--db", db, "-k", "5000"],
        "search": ["search", "a dog catches a frisbee", "--db", db, "-k", "5"],
    }


def _run(argv: list[str], env: dict, cwd: str) -> tuple[float, float, str, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # cwd: not a checkout (`python -c` puts the current folder first on sys.path, ahead of PYTHONPATH)
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=600,
                          cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    heavy = next((l.split(" ", 1)[1] if " " in l else "" for l in proc.stderr.splitlines() if l.startswith("HEAVY")), "?")
    return wall, cpu, heavy, proc.returncode


def run(repeats: int, model: str, source: str | None, log=print) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vidclip-bench-cli-"))
    db = str(tmp / "db")
    import vidclip
    from vidclip.config import ModelConfig, SamplingConfig

    video = corpus.ensure([corpus.CorpusVideo("h264", "360p", 5.0, 1)], corpus.DEFAULT_CACHE, log)[0]
    vidclip.open(db, model=ModelConfig(name=model, pretrained="none", device="cpu")).ingest(
        [str(video)], SamplingConfig(fps=1.0, clip_seconds=4.0), progress=False)
    root = source or str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep))
    probe = subprocess.run([sys.executable, "-c", "import vidclip; print(vidclip.__file__)"], capture_output=True,
                           text=True, env=env, cwd=str(tmp)).stdout.strip()
    log(f"vidclip from {probe}")
    out = {"source": root, "vidclip": probe, "model": model, "repeats": repeats, "cpu_count": os.cpu_count(), "commands": {}}
    for name, argv in commands(db, model).items():
        runs = [_run(argv, env, str(tmp)) for _ in range(repeats)]
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        row = {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3),
               "imports": runs[-1][2], "exit": runs[-1][3]}
        out["commands"][name] = row
        log(f"{name:18s} wall {row['wall_s']:6.2f} s  cpu {row['cpu_s']:6.2f} s  exit {row['exit']}  heavy: {row['imports'] or '-'}")
    return out


def add_arguments(ap) -> None:
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--source", help="another checkout's root to run instead of this one (before/after)")
    ap.add_argument("--out", default="benchmarks/cli.json")


def cli(args) -> int:
    result = run(args.repeats, args.model, args.source)
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    sys.exit(main())
