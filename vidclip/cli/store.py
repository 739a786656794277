"""`vidclip status` and `vidclip check`: what a store holds, and whether it is damaged."""

from __future__ import annotations

import json

from vidclip.cli.arguments import add_store_args, open_library, storage_options


def add_parsers(sub) -> None:
    """Add the status and check subcommands."""
    p = sub.add_parser("status", help="counts and settings of a store")
    add_store_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("check", help="read every table; report damage per table and per video (--repair heals it)")
    add_store_args(p)
    p.add_argument("--repair", action="store_true",
                   help="rebuild damaged tables from their readable rows; videos that lost rows are ingested again "
                        "by the next ingest")
    p.add_argument("--json", action="store_true")


def cmd_status(args) -> int:
    lib = open_library(args, create=False)
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


COMMANDS = {"status": cmd_status, "check": cmd_check}
