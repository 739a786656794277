"""`vidclip status`, `vidclip list` and `vidclip check`: what a store holds, and whether it is damaged.

None of them loads the model: no torch import, so they answer in about a second."""

from __future__ import annotations

import json

from vidclip.cli.arguments import add_store_args, filter_pairs, open_library, positive_int, storage_options

LIST_COLUMNS = ("uri", "status", "duration_s", "decoder", "decoder_note", "n_clips", "n_frames", "error", "video_id")


def add_parsers(sub) -> None:
    """Add the status and check subcommands."""
    p = sub.add_parser("status", help="counts and settings of a store")
    add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")

    p = sub.add_parser("list", help="list the store's videos: status, duration, decoder, note, clips, frames")
    add_store_args(p)
    p.add_argument("--failed", action="store_true", help="only videos that failed, with their reasons")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep videos whose COLUMN equals VALUE (repeatable), as in search")
    p.add_argument("--limit", type=positive_int, help="at most this many videos")
    p.add_argument("--json", action="store_true", help="one JSON object per video and line")

    p = sub.add_parser("check", help="read every table; report damage per table and per video (--repair heals it)")
    add_store_args(p)
    p.add_argument("--repair", action="store_true",
                   help="rebuild damaged tables from their readable rows; videos that lost rows are ingested again "
                        "by the next ingest")
    p.add_argument("--json", action="store_true", help="print the findings (and the repair) as one JSON object")


def cmd_status(args) -> int:
    lib = open_library(args, create=False)
    status = lib.status()
    if args.json:
        print(json.dumps(status))
        return 0
    v = status["videos"]
    model = status["model"]
    print(f"store:    {lib.uri}")
    print(f"videos:   {v['ok']} ok, {v['failed']} failed")
    for reason, n in status["failures"].items():
        print(f"  failed: {n} x {reason}")
    if status["failures"]:
        print(f"          ('vidclip list --db {args.db} --failed' lists them)")
    print(f"frames:   {status['frames']}")
    print(f"clips:    {status['clips']}")
    print(f"model:    {model['name']} ({model['pretrained']})" if model["name"] else "model:    none yet")
    print(f"sampling: {describe_settings(status['sampling'])}")
    print(f"temporal: {describe_settings(status['temporal'])}")
    for t in status.get("index") or []:
        advice = "  -> run 'vidclip index' again" if t["needs_reindex"] else ""
        print(f"index:    {t['table']}: {t['rows']} rows, {t['mode']} search{advice}")
    return 0


def describe_settings(settings: dict | None) -> str:
    """{'mode': 'fps', 'fps': 1.0, 'clip_seconds': 4.0} -> 'mode fps, fps 1, clip_seconds 4'."""
    if not settings:
        return "none yet"
    return ", ".join(f"{key} {_value(value)}" for key, value in settings.items() if value is not None)


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + describe_settings(value) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def cmd_list(args) -> int:
    from vidclip.store.filters import build_where
    from vidclip.store.integrity import quick_check
    from vidclip.store.schema import FAILED, sql_str

    where = filter_pairs(args.filter)
    lib = open_library(args, create=False)
    quick_check(lib.store)  # a damaged store is refused with one line, not listed wrong
    predicates = [p for p in (build_where(where or None), f"status = {sql_str(FAILED)}" if args.failed else None) if p]
    shown = 0
    where_sql = " AND ".join(f"({p})" for p in predicates) or None
    for batch in lib.store.video_batches(list(LIST_COLUMNS), where_sql, limit=args.limit):
        for row in batch.to_pylist():
            shown += 1
            print(json.dumps(row) if args.json else _video_line(row))
    if not args.json and shown == 0:
        print("no videos" + (" failed" if args.failed else "") + (" match the filter" if where else ""))
    return 0


def _video_line(row: dict) -> str:
    """status  duration  clips/frames  decoder [note]  uri  [-- error]"""
    duration = f"{row['duration_s']:8.1f}s" if row["duration_s"] is not None else "       -"
    counts = f"{row['n_clips'] or 0:5d} clips {row['n_frames'] or 0:6d} frames"
    decoder = (row["decoder"] or "-") + (f" ({row['decoder_note']})" if row["decoder_note"] else "")
    tail = f"  -- {row['error']}" if row["error"] else ""
    return f"{row['status']:7s} {duration} {counts}  {decoder:10s} {row['uri']}{tail}"


def cmd_check(args) -> int:
    from vidclip.store.integrity import check_store, repair_store
    from vidclip.store.store import Store

    store = Store.open(args.db, storage_options=storage_options(args))
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


COMMANDS = {"status": cmd_status, "list": cmd_list, "check": cmd_check}
