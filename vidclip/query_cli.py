"""`vidclip classify`: zero-shot classification of a store's videos or clips.

Wired into vidclip/cli.py with `add_parsers(sub)` and `COMMANDS`.(as learn_cli).  Heavy
imports happen inside the command, so importing this module stays cheap.
"""

from __future__ import annotations

import json

from vidclip.arguments import positive_int as _positive_int


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("classify", help="zero-shot classify videos (or clips) into LABELs with CLIP prompts")
    p.add_argument("labels", nargs="+", metavar="LABEL", help="two or more class names")
    p.add_argument("--db", required=True, help="store directory")
    p.add_argument("--level", choices=["video", "clip"], default="video")
    p.add_argument("--template", action="append", metavar="T",
                   help="prompt template with one '{}' (repeatable; default: the built-in video templates)")
    p.add_argument("-k", type=_positive_int, default=None, help="only the k most confident items")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")


def cmd_classify(args) -> int:
    import vidclip

    lib = vidclip.open(args.db, device=args.device, create=False)
    result = lib.classify(args.labels, templates=args.template, level=args.level, k=args.k)
    rows = result.to_dicts()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    for row in rows:
        span = f" [{row['start_s']:.2f}-{row['end_s']:.2f}s]" if args.level == "clip" else ""
        print(f"{row['prob']:.3f}  {row['label']:<24s} {row['uri']}{span}")
    print(f"{len(rows)} {args.level}(s) classified into {len(result.labels)} labels")
    return 0


COMMANDS = {"classify": cmd_classify}
