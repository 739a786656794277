"""The `vidclip` command line.  User mistakes end in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from vidclip import bench_cli, index_cli, learn_cli, query_cli
from vidclip.arguments import positive_float as _positive_float
from vidclip.arguments import positive_int as _positive_int
from vidclip.config import SAMPLING_MODES
from vidclip.errors import InputError, VidclipError
from vidclip.storage import describe_storage_failure

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(EXIT_ERROR, f"vidclip: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vidclip", description="Text-to-video search on frame-level CLIP.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="open_clip model name (default: the store's, or ViT-B-32 for a new store)")
        p.add_argument(
            "--pretrained",
            help="open_clip pretrained tag, a local checkpoint file, or 'none' for seeded random weights "
            "(default: the store's, or laion2b_s34b_b79k for a new store)",
        )
        p.add_argument("--model-config", help="open_clip model config JSON registering a custom architecture")
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")

    p = sub.add_parser("ingest", help="add videos (files or folders, recursively) to a store")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--db", required=True, help="store directory (created if missing)")
    model_args(p)
    p.add_argument("--sampling", choices=SAMPLING_MODES,
                   help="fps: frames at --fps; uniform: --max-frames per clip; keyframes: the keyframe at or "
                   "before each 1/fps target only (fastest, for very large libraries)")
    p.add_argument("--fps", type=_positive_float, help="sampled frames per second (default 1)")
    p.add_argument("--clip-seconds", type=_positive_float, help="clip length in seconds (default 10)")
    p.add_argument("--max-frames", type=_positive_int, help="frames per clip fed to the temporal module (default 12)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="frames per encoder forward pass")
    p.add_argument("--retry-failed", action="store_true", help="decode again files recorded as failed")
    p.add_argument("--decode-timeout", type=_positive_float, default=120.0,
                   help="kill a video's decoder after this many seconds without progress (default 120)")
    p.add_argument("--stall-timeout", type=_positive_float, default=300.0, metavar="SECONDS",
                   help="fail with one line (keeping what was committed) when the job makes no progress "
                        "for this long (default 300)")
    p.add_argument("--max-pixels", type=_positive_int, default=7680 * 4320,
                   help="refuse videos whose declared resolution exceeds this many pixels (default 8K)")
    p.add_argument("--commit-videos", type=_positive_int, default=64,
                   help="videos per bulk commit to the store (default 64)")
    p.add_argument("--local", action="store_true", help="run in this process instead of on Ray (debugging)")
    p.add_argument("--ray-address", help="join an existing Ray cluster (default: start a local one, loopback only)")
    p.add_argument("--decode-workers", type=_positive_int,
                   help="videos decoded at once: Ray tasks (default: CPUs - 1), or with --local decode "
                        "child processes feeding this process's encoder (default 1)")
    p.add_argument("--encode-actors", type=_positive_int, help="encoder actors on Ray (default: one per GPU, else 1)")
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="LanceDB storage option for an object-store --db (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")

    p = sub.add_parser("prune", help="forget files that no longer exist and delete their videos")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", help="search a store by text or image")
    p.add_argument("query", nargs="?", help="text query (omit with --image)")
    p.add_argument("--db", required=True)
    p.add_argument("--image", help="image file to use as the query")
    p.add_argument("-k", type=_positive_int, default=10, help="number of hits (default 10)")
    p.add_argument("--per-video", type=_positive_int, default=1, help="hits allowed per video (default 1)")
    p.add_argument("--level", choices=["clip", "video"], default="clip", help="rank clips (default) or whole videos")
    p.add_argument("--video", help="a video file as the query (embedded the way the store embeds clips)")
    p.add_argument("--span", nargs=2, type=float, metavar=("START", "END"), help="with --video: only this span (seconds)")
    p.add_argument("--rerank", choices=["max", "mean", "fusion"], help="re-score the top candidates on their frame vectors")
    p.add_argument("--hybrid", action="store_true", help="fuse full-text search over title/description/tags")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep videos whose COLUMN equals VALUE (repeatable; values are quoted safely)")
    p.add_argument("--where-sql", help="raw SQL filter on the videos table: TRUSTED INPUT ONLY")
    model_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of hits")

    p = sub.add_parser("status", help="counts and settings of a store")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("check", help="read every table; report damage per table and per video (--repair heals it)")
    p.add_argument("--db", required=True)
    p.add_argument("--repair", action="store_true",
                   help="rebuild damaged tables from their readable rows; videos that lost rows are ingested again "
                        "by the next ingest")
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")

    learn_cli.add_parsers(sub)  # subparsers already build _Parser instances
    query_cli.add_parsers(sub)
    index_cli.add_parsers(sub)
    bench_cli.add_parsers(sub)

    p = sub.add_parser("demo", help="generate sample videos, ingest them and search them")
    p.add_argument("dir", nargs="?", default="vidclip-demo", help="working folder (default ./vidclip-demo)")
    p.add_argument("--json", action="store_true", help="print the searches' hits as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        rc = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported below, not at shutdown
        return rc
    except VidclipError as exc:
        print(f"vidclip: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, RuntimeError, ValueError) as exc:
        # temporal.TemporalError and friends: a user-facing ValueError from a pure-torch package.
        if isinstance(exc, ValueError) and type(exc).__module__.startswith("temporal"):
            print(f"vidclip: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, BrokenPipeError):
            return _quiet_broken_pipe()
        storage = describe_storage_failure(exc, getattr(args, "db", None))
        if storage is None:
            raise
        print(f"vidclip: error: {storage}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vidclip: interrupted", file=sys.stderr)
        return 130


def _quiet_broken_pipe() -> int:
    """The reader went away (`vidclip status | head -3`): stop quietly, as `git log | head` does.
    stdout is pointed at /dev/null so the interpreter's final flush cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _configure_logging(verbose: bool) -> None:
    """vidclip's own messages on stderr; other libraries only for errors (or everything with -v).

    open_clip logs through the root logger ("No pretrained weights loaded ..."); vidclip says the
    same thing in its own words, so third-party chatter below ERROR is dropped unless verbose."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vidclip: %(levelname)s: %(name)s: %(message)s" if verbose else "vidclip: %(message)s"))
    if not verbose:
        handler.addFilter(lambda r: r.name.split(".")[0] in ("vidclip", "temporal", "pipelines") or r.levelno >= logging.ERROR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _storage_options(pairs: list[str]) -> dict | None:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--storage-option expects KEY=VALUE, got {pair!r}")
        options[key] = value
    return options or None


def _open(args, create: bool):
    import vidclip

    return vidclip.open(
        args.db,
        storage_options=_storage_options(getattr(args, "storage_option", [])),
        model=getattr(args, "model", None),
        pretrained=getattr(args, "pretrained", None),
        model_config=getattr(args, "model_config", None),
        device=getattr(args, "device", "auto"),
        create=create,
    )


def cmd_ingest(args) -> int:
    from vidclip.config import DecodeConfig, SamplingConfig

    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise InputError(f"{missing[0]}: no such file or directory")
    lib = _open(args, create=True)
    sampling = None
    given = {k: v for k, v in (("mode", args.sampling), ("fps", args.fps), ("clip_seconds", args.clip_seconds), ("max_frames", args.max_frames)) if v is not None}
    if given:
        recorded = lib.store.meta.get("sampling") or {}
        sampling = SamplingConfig(**{**recorded, **given})
    decode = DecodeConfig(timeout_s=args.decode_timeout, max_pixels=args.max_pixels)
    ray = False
    if not args.local:
        from pipelines.options import JobOptions

        ray = JobOptions(
            ray_address=args.ray_address, decode_workers=args.decode_workers,
            encode_actors=args.encode_actors, batch_size=args.batch_size,
        )
    from vidclip.committer import CommitPolicy

    report = lib.ingest(
        args.paths, sampling, decode=decode, batch_size=args.batch_size, retry_failed=args.retry_failed,
        progress=not args.json, ray=ray, commit=CommitPolicy(max_videos=args.commit_videos),
        stall_s=args.stall_timeout, decode_workers=(args.decode_workers or 1) if args.local else 1,
    )
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(
            f"ingested {report.ok} video(s), {report.failed} failed, {report.skipped} skipped: "
            f"{report.frames} frames, {report.clips} clips in {report.seconds:.1f}s"
        )
        for failure in report.failures:
            print(f"  failed: {failure['uri']}: {failure['error']}")
    return 0


def cmd_search(args) -> int:
    if not args.query and not args.image and not args.video:
        raise InputError("give a text QUERY, --image PATH or --video PATH")
    if args.span and not args.video:
        raise InputError("--span goes with --video")
    where = {}
    for item in args.filter:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise InputError(f"--filter expects COLUMN=VALUE, got {item!r}")
        where[column] = value  # typed by the column (vidclip.filters): '1984' stays a string for a text column
    lib = _open(args, create=False)
    hits = lib.search(
        args.query, image=args.image, video=args.video, span=tuple(args.span) if args.span else None,
        k=args.k, per_video=args.per_video, level=args.level, rerank=args.rerank, hybrid=args.hybrid,
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


def cmd_status(args) -> int:
    lib = _open(args, create=False)
    status = lib.status()
    if args.json:
        print(json.dumps(status))
    else:
        v = status["videos"]
        model = status["model"]
        print(f"store:    {lib.uri}")
        print(f"videos:   {v['ok']} ok, {v['failed']} failed")
        print(f"frames:   {status['frames']}")
        print(f"clips:    {status['clips']}")
        print(f"model:    {model['name']} ({model['pretrained']})")
        print(f"sampling: {status['sampling']}")
        print(f"temporal: {status['temporal']}")
        for t in status.get("index") or []:
            advice = "  -> run 'vidclip index' again" if t["needs_reindex"] else ""
            print(f"index:    {t['table']}: {t['rows']} rows, {t['mode']} search{advice}")
    return 0


def cmd_check(args) -> int:
    from vidclip.integrity import check_store, repair_store
    from vidclip.store import Store

    store = Store.open(args.db, storage_options=_storage_options(args.storage_option))
    report = check_store(store)
    out: dict = {"check": report.to_dict()}
    if not args.json:
        for f in report.findings:
            print(f"damaged: {f.line()}", flush=True)
        print(f"checked {len(report.rows)} table(s), {report.ok_videos} ok video(s): "
              + (f"{len(report.findings)} problem(s)" if report.damaged else "no damage"), flush=True)
    if args.repair and report.damaged:
        out["repair"] = repair_store(store, report)
        out["after"] = check_store(store).to_dict()
    if args.json:
        print(json.dumps(out))
    else:
        if "repair" in out:
            r = out["repair"]
            print(f"repaired: rebuilt {', '.join(r['rebuilt_tables']) or 'no table'}; "
                  f"{r['videos_to_reingest']} video(s) will be ingested again by the next ingest")
        elif report.damaged:
            print(f"run 'vidclip check --db {args.db} --repair' to heal it")
    final = out.get("after", out["check"])
    return 1 if final["damaged"] else 0


def cmd_prune(args) -> int:
    lib = _open(args, create=False)
    result = lib.store.prune()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"removed {result['removed_uris']} missing file(s) and {result['removed_videos']} video(s)")
    return 0


def cmd_demo(args) -> int:
    from vidclip.demo import run_demo

    return run_demo(args.dir, as_json=args.json)


COMMANDS = {
    "ingest": cmd_ingest, "search": cmd_search, "status": cmd_status, "check": cmd_check, "prune": cmd_prune,
    "demo": cmd_demo,
    **learn_cli.COMMANDS,
    **query_cli.COMMANDS,
    **index_cli.COMMANDS,
    **bench_cli.COMMANDS,
}


if __name__ == "__main__":
    sys.exit(main())
