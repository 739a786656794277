"""`vidclip demo`: the README's main job on the embedded default.

Generates a few small sample videos, ingests them on a local Ray into a LanceDB
directory and runs searches that print hits.  It uses the default pretrained model when it
can be fetched or is cached; otherwise it says plainly that results will not be
meaningful and continues with seeded random weights (only the demo falls back:
`vidclip ingest` with an unavailable tag is an error).
"""

from __future__ import annotations

import json
import logging
import os

from vidclip.config import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelConfig, SamplingConfig
from vidclip.errors import WeightsUnavailableError

log = logging.getLogger("vidclip")

QUERIES = ("a red ball", "ocean waves", "a city at night")


def run_demo(folder: str, as_json: bool = False, clips: str = "fixed") -> int:
    import vidclip
    from vidclip.samples.synth import write_sample_library

    videos_dir = os.path.join(folder, "videos")
    db_dir = os.path.join(folder, "db" if clips == "fixed" else f"db-{clips}")  # a store keeps its clip mode
    log.info("demo folder: %s (sample videos in videos/, the store in db/)", os.path.abspath(folder))
    if not os.path.isdir(videos_dir) or not os.listdir(videos_dir):
        os.makedirs(videos_dir, exist_ok=True)
        paths = write_sample_library(videos_dir)
        log.info("wrote %d sample videos to %s", len(paths), videos_dir)

    lib = vidclip.open(db_dir)
    if "model_source" not in lib.store.meta:
        lib = _open_with_fallback(db_dir)
    # Short clips, so the two-scene sample videos show moments inside them.
    # --clips shots cuts them at their scene change instead.
    sampling = None if "sampling" in lib.store.meta else SamplingConfig(fps=2.0, clip_seconds=3.0, clips=clips)
    from pipelines.options import JobOptions

    # The embedded default: a local Ray (loopback only, started for the job) and a LanceDB folder.
    report = lib.ingest([videos_dir], sampling, progress=not as_json, ray=JobOptions())
    log.info("ingest: %d ok, %d failed, %d skipped, %d frames, %d clips", report.ok, report.failed, report.skipped, report.frames, report.clips)
    results = {}
    for query in QUERIES:
        hits = lib.search(query, k=3)
        results[query] = hits.to_dicts()
        if not as_json:
            print(f'\nsearch "{query}":')
            for rank, hit in enumerate(hits, 1):
                print(f"  {rank}. {hit.score:.4f}  {hit.start_s:6.1f}s-{hit.end_s:6.1f}s  {os.path.basename(hit.uri)}")
    if as_json:
        print(json.dumps({"ingest": report.to_dict(), "searches": results}))
    else:
        print(f"\nstore: {db_dir}  (try: vidclip search \"a blue square\" --db {db_dir})")
    return 0


def _open_with_fallback(db_dir: str):
    import vidclip

    lib = vidclip.open(db_dir, model=ModelConfig(DEFAULT_MODEL, DEFAULT_PRETRAINED))
    try:
        lib.encoder
        return lib
    except WeightsUnavailableError as exc:
        log.warning("%s", exc)
        log.warning(
            "pretrained weights for %s are not available here, so the demo continues with seeded RANDOM "
            "weights: the pipeline runs end to end, but search results will NOT be meaningful.",
            DEFAULT_MODEL,
        )
    return vidclip.open(db_dir, model=ModelConfig(DEFAULT_MODEL, "none"))


def add_parsers(sub) -> None:
    """Add the demo subcommand."""
    p = sub.add_parser("demo", help="generate sample videos, ingest them and search them")
    p.add_argument("dir", nargs="?", default="vidclip-demo", metavar="DIR",
                   help="the folder for the videos and the store (default ./vidclip-demo, named when it starts)")
    p.add_argument("--clips", choices=["fixed", "shots"], default="fixed",
                   help="fixed 3 s clips (default), or one clip per shot (a store of its own: DIR/db-shots)")
    p.add_argument("--json", action="store_true", help="print the searches' hits as JSON")


def cmd_demo(args) -> int:
    return run_demo(args.dir, as_json=args.json, clips=args.clips)


COMMANDS = {"demo": cmd_demo}
