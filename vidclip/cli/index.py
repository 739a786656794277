"""`vidclip index`: build (or report) vector indexes on the clip and whole-video tables.

Wired into vidclip/cli/main.py with `add_parsers(sub)` and `COMMANDS`.  Heavy imports happen
inside the command, so importing this module stays cheap.
"""

from __future__ import annotations

import json

from vidclip.cli.arguments import add_model_args, add_store_args, open_library, storage_options
from vidclip.cli.arguments import positive_int as _positive_int


def add_parsers(subparsers) -> None:
    """Add the index subcommand."""
    from vidclip.store.index import DEFAULT_INDEX_TYPE, EXACT_THRESHOLD, INDEX_TYPES

    p = subparsers.add_parser("index", help="build ANN indexes on clip/video vectors (exact search below a size threshold)")
    add_store_args(p)
    p.add_argument("--threshold", type=_positive_int, default=EXACT_THRESHOLD,
                   help=f"tables with fewer rows stay on exact search (default {EXACT_THRESHOLD})")
    p.add_argument("--force", action="store_true", help="index even below the threshold")
    p.add_argument("--index-type", default=DEFAULT_INDEX_TYPE, choices=list(INDEX_TYPES),
                   help=f"LanceDB index type (default {DEFAULT_INDEX_TYPE}: RaBitQ codes, re-ranked exactly)")
    p.add_argument("--calibration", choices=["auto", "text", "stored"], default="auto",
                   help="queries the search settings are calibrated on: 'text' encodes built-in prompts with the "
                        "store's text tower (text queries do not look like stored clips, and need wider search), "
                        "'stored' uses perturbed stored vectors and needs no model; auto: text when the store "
                        "records a model (default)")
    add_model_args(p)
    p.add_argument("--status", action="store_true", help="only report indexed/unindexed rows and whether to re-index")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_index(args) -> int:
    from vidclip.store.index import index_status
    from vidclip.store.store import Store

    if args.status:
        report = index_status(Store.open(args.db, storage_options=storage_options(args)))
    else:
        lib = open_library(args, create=False)
        report = lib.build_index(threshold=args.threshold, force=args.force, index_type=args.index_type,
                                 calibration=args.calibration)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    for t in report.tables:
        if t.mode == "exact":
            print(f"{t.level:5s} {t.table}: {t.rows} rows, exact search. {t.note}".rstrip())
            continue
        detail = f"nprobes {t.nprobes}" + (f", refine_factor {t.refine_factor}" if t.refine_factor else "") + \
            (f", ef {t.ef}" if t.ef else "")
        recall = f", recall@10 {t.recall_at_10:.3f}" if t.recall_at_10 is not None else ""
        recall += f" on {t.calibration}" if t.calibration and recall else ""
        built = f", built in {t.build_s:.1f}s" if t.build_s is not None else ""
        print(f"{t.level:5s} {t.table}: {t.rows} rows, {t.index_type} ({t.num_partitions} partitions), {detail}{recall}{built}; "
              f"unindexed rows {t.unindexed_rows}. {t.note}".rstrip())
    return 0


COMMANDS = {"index": cmd_index}
