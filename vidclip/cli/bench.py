"""`vidclip bench decode|encode|peer|shots|ingest|parity|driver|cluster|memory|serve|gpu|ann`: the performance benchmarks (benchmarks/*.py).

Wired into vidclip/cli/main.py with `add_parsers(sub)` and `COMMANDS`.  Each benchmark generates
its corpus once into a cache directory (default ~/.cache/vidclip-bench, or $VIDCLIP_BENCH_CACHE)
and writes a JSON result (machine, versions, every run, medians) to benchmarks/<name>.json.
"""

from __future__ import annotations

import importlib

_BENCHES = {
    "decode": ("benchmarks.decode", "decord vs PyAV: full, sparse (seek vs decode-through), fps, keyframes, resize; --structure: the sparse steps by GOP and B-frames"),
    "encode": ("benchmarks.encode", "image tower images/s on CPU: batch sizes, bf16, channels_last, threads, compile"),
    "peer": ("benchmarks.peer", "vidclip ingest vs clip-video-encode: wall, CPU-s per frame, peak RSS, equal frames out"),
    "shots": ("benchmarks.shots", "shot-boundary detectors on generated videos with known cuts: precision, recall, F1, decode CPU"),
    "ingest": ("benchmarks.ingest", "end-to-end ingest vs decode-only + encode-only walls, peak memory"),
    "parity": ("benchmarks.parity", "pixel parity of ingest's model inputs with open_clip's PIL preprocess, per resize choice"),
    "driver": ("benchmarks.driver", "the Ray driver's ceiling: assemble, aggregate and commit synthetic encoder rows"),
    "cluster": ("benchmarks.cluster", "ingest on a two-raylet Ray cluster started here vs --local, and the encoder-actor rule"),
    "memory": ("benchmarks.memory", "peak memory of the driver and decode child by video length and frame shape"),
    "serve": ("benchmarks.serve", "vidclip serve under load: text-search latency and requests/s at 1, 4, 16 clients"),
    "cli": ("benchmarks.cli", "cold start of each command: wall, CPU and heavy imports (before/after with --source)"),
    "gpu": ("benchmarks.gpu", "on a GPU: encoder images/s (bf16/fp16, compile), decode cores per GPU, ingest"),
    "ann": ("benchmarks.ann", "LanceDB ANN index sweep on hard (out-of-distribution) data: build cost, p50/p99, recall@10"),
}


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("bench", help="performance benchmarks on generated videos (results in benchmarks/*.json)")
    which = p.add_subparsers(dest="bench", metavar="|".join(_BENCHES))
    which.required = True
    for name, (module, help_text) in _BENCHES.items():
        sp = which.add_parser(name, help=help_text)
        importlib.import_module(module).add_arguments(sp)
        _explain(sp)


# What the benchmarks' common options mean (a benchmark may say more in its own help).
_COMMON_HELP = {
    "repeats": "timed repetitions of each case; the median is reported",
    "out": "the JSON file the results are written to",
    "cache": "folder for the generated videos, reused across runs",
    "model": "open_clip model name",
    "models": "open_clip model names",
    "n": "number of videos",
}


def _explain(parser) -> None:
    """Every option gets help text: the common ones from _COMMON_HELP, the rest their default."""
    for action in parser._actions:
        if action.help is None and action.option_strings:
            text = _COMMON_HELP.get(action.dest, action.dest.replace("_", " "))
            action.help = f"{text} (default: {action.default})" if action.default not in (None, False) else text


def cmd_bench(args) -> int:
    return importlib.import_module(_BENCHES[args.bench][0]).cli(args)


COMMANDS = {"bench": cmd_bench}
