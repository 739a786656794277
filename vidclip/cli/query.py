"""`vidclip search` and `vidclip classify`: ranked hits with their moments; zero-shot labels.

Wired into vidclip/cli/main.py with `add_parsers(sub)` and `COMMANDS`.(as learn_cli).  Heavy
imports happen inside the command, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os

from vidclip.cli.arguments import add_model_args, add_store_args, filter_pairs, open_library, storage_options
from vidclip.cli.arguments import positive_int as _positive_int
from vidclip.errors import InputError
from vidclip.query.search import MAX_K


def _hit_count(text: str) -> int:
    """-k, refused by the parser (before the store or the model is opened) when out of range."""
    import argparse

    value = _positive_int(text)
    if value > MAX_K:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_K} hits, got {value}")
    return value


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("search", help="search a store by text or image")
    p.add_argument("query", nargs="?", help="text query (omit with --image)")
    add_store_args(p)
    p.add_argument("--image", help="image file to use as the query")
    p.add_argument("-k", type=_hit_count, default=10, help=f"number of hits (default 10, at most {MAX_K})")
    p.add_argument("--per-video", type=_positive_int, default=1, help="hits allowed per video (default 1)")
    p.add_argument("--level", choices=["clip", "video"], default="clip", help="rank clips (default) or whole videos")
    p.add_argument("--video", help="a video file as the query (embedded the way the store embeds clips)")
    p.add_argument("--span", nargs=2, type=float, metavar=("START", "END"), help="with --video: only this span (seconds)")
    p.add_argument("--rerank", choices=["max", "mean", "fusion"], help="re-score the top candidates on their frame vectors")
    p.add_argument("--moment", choices=["refined", "clip"], default="refined",
                   help="refined: the frames inside the clip that match (default); clip: the whole clip, which "
                        "is the shot in a store ingested with --clips shots")
    p.add_argument("--hybrid", action="store_true", help="fuse full-text search over title/description/tags")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep videos whose COLUMN equals VALUE (repeatable; values are quoted safely)")
    p.add_argument("--where-sql", help="raw SQL filter on the videos table: TRUSTED INPUT ONLY")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of hits")

    p = subparsers.add_parser("classify", help="zero-shot classify videos (or clips) into LABELs with CLIP prompts")
    p.add_argument("labels", nargs="+", metavar="LABEL", help="two or more class names")
    add_store_args(p)
    p.add_argument("--level", choices=["video", "clip"], default="video", help="classify whole videos (default) or clips")
    p.add_argument("--template", action="append", metavar="T",
                   help="prompt template with one '{}', in the labels' language, e.g. '一段{}的视频' (repeatable; "
                        "default: the built-in English video templates)")
    p.add_argument("-k", type=_positive_int, default=None, help="only the k most confident items")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")


def cmd_search(args) -> int:
    if not args.query and not args.image and not args.video:
        raise InputError("give a text QUERY, --image PATH or --video PATH")
    if args.span and not args.video:
        raise InputError("--span goes with --video")
    for flag, path in (("--image", args.image), ("--video", args.video)):
        if path and "://" not in path and not os.path.isfile(path):  # before the store and the model open
            raise InputError(f"{path}: no such file ({flag})")
    where = filter_pairs(args.filter)
    lib = open_library(args, create=False)
    hits = lib.search(
        args.query, image=args.image, video=args.video, span=tuple(args.span) if args.span else None,
        k=args.k, per_video=args.per_video, level=args.level, rerank=args.rerank, hybrid=args.hybrid, moment=args.moment,
        where=where or None, where_sql=args.where_sql,
    )
    if args.json:
        print(json.dumps(hits.to_dicts()))
    else:
        _print_hits(hits)
    return 0


def _print_hits(hits) -> None:
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:3d}. {hit.score:.4f}  {_clock(hit.start_s)}-{_clock(hit.end_s)}  {hit.uri}")


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def cmd_classify(args) -> int:
    import vidclip

    lib = vidclip.open(args.db, device=args.device, create=False, storage_options=storage_options(args))
    result = lib.classify(args.labels, templates=args.template, level=args.level, k=args.k)
    rows = result.to_dicts()
    if args.json:
        for row in rows:
            print(json.dumps({**row, "scoring": result.scoring}))
        return 0
    for row in rows:
        span = f" [{row['start_s']:.2f}-{row['end_s']:.2f}s]" if args.level == "clip" else ""
        print(f"{row['prob']:.3f}  {row['label']:<24s} {row['uri']}{span}")
    how = "each label's own sigmoid probability" if result.scoring == "sigmoid" else "softmax over the labels"
    print(f"{len(rows)} {args.level}(s) classified into {len(result.labels)} labels ({how})")
    return 0


COMMANDS = {"search": cmd_search, "classify": cmd_classify}
