"""`vidclip ingest` and `vidclip prune`: add videos to a store, forget files that are gone."""

from __future__ import annotations

import glob
import json
import logging
import os

from vidclip.cli.arguments import add_model_args, add_store_args, open_library, positive_float, positive_int, storage_options
from vidclip.config import SAMPLING_MODES
from vidclip.errors import InputError

log = logging.getLogger("vidclip")


def add_parsers(sub) -> None:
    """Add the ingest and prune subcommands."""
    p = sub.add_parser("ingest", help="add videos (files, folders, s3:// gs:// az:// prefixes, manifests) to a store")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video files, folders (recursive), object-store prefixes or objects, CSV/JSONL/Parquet manifests")
    add_store_args(p, help="the store: a directory or an s3:// gs:// az:// URI (created by the first commit)")
    add_model_args(p)
    p.add_argument("--sampling", choices=SAMPLING_MODES,
                   help="fps: frames at --fps; uniform: --max-frames per clip; keyframes: the keyframe at or "
                   "before each 1/fps target only (fastest, for very large libraries)")
    p.add_argument("--fps", type=positive_float, help="sampled frames per second (default 1)")
    p.add_argument("--clip-seconds", type=positive_float, help="clip length in seconds (default 10); with --clips shots, the longest a shot's clip may be")
    p.add_argument("--clips", choices=["fixed", "shots"],
                   help="fixed: windows of --clip-seconds (default); shots: one clip per shot, cut where the video cuts")
    p.add_argument("--max-frames", type=positive_int, help="frames per clip fed to the temporal module (default 12)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="frames per encoder forward pass")
    p.add_argument("--retry-failed", action="store_true", help="decode again files recorded as failed")
    p.add_argument("--decode-timeout", type=positive_float, default=120.0,
                   help="kill a video's decoder after this many seconds without progress (default 120)")
    p.add_argument("--stall-timeout", type=positive_float, default=300.0, metavar="SECONDS",
                   help="fail with one line (keeping what was committed) when the job makes no progress "
                        "for this long (default 300)")
    p.add_argument("--max-pixels", type=positive_int, default=7680 * 4320,
                   help="refuse videos whose declared resolution exceeds this many pixels (default 8K)")
    p.add_argument("--commit-videos", type=positive_int, default=64,
                   help="videos per bulk commit to the store (default 64)")
    p.add_argument("--runner", choices=["auto", "local", "ray"], default="auto",
                   help="auto (default): in this process, or on a local Ray for machines with 2+ GPUs or more "
                        "than 8 cores (the choice is printed once); local: in this process; ray: on a local "
                        "Ray cluster (loopback only)")
    p.add_argument("--local", action="store_true", help="same as --runner local")
    p.add_argument("--ray-address", help="join an existing Ray cluster (also $RAY_ADDRESS); implies Ray")
    p.add_argument("--decode-workers", type=positive_int,
                   help="videos decoded at once: Ray tasks (default: CPUs - 1), or in this process decode "
                        "child processes feeding its encoder (default: by --runner auto's rule)")
    p.add_argument("--encode-actors", type=positive_int, help="encoder actors on Ray (default: one per GPU, else 1)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")

    p = sub.add_parser("prune", help="forget files that no longer exist and delete their videos")
    add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def cmd_ingest(args) -> int:
    from vidclip.config import DecodeConfig, SamplingConfig
    from vidclip.objectstore import ObjectStorage

    on_ray, workers, announce = _runner(args)
    lib = open_library(args, create=True)  # nothing is written before the inputs are listed
    sampling = None
    given = {k: v for k, v in (("mode", args.sampling), ("fps", args.fps), ("clip_seconds", args.clip_seconds), ("max_frames", args.max_frames), ("clips", args.clips)) if v is not None}
    if given:
        recorded = lib.store.meta.get("sampling") or {}
        sampling = SamplingConfig(**{**recorded, **given})
    decode = DecodeConfig(timeout_s=args.decode_timeout, max_pixels=args.max_pixels,
                          storage=ObjectStorage.of(storage_options(args)))
    ray = False
    if on_ray:
        from pipelines.options import JobOptions

        ray = JobOptions(
            ray_address=args.ray_address, decode_workers=args.decode_workers,
            encode_actors=args.encode_actors, batch_size=args.batch_size,
        )
    from vidclip.ingest.committer import CommitPolicy

    report = lib.ingest(
        args.paths, sampling, decode=decode, batch_size=args.batch_size, retry_failed=args.retry_failed,
        progress=not args.json, ray=ray, commit=CommitPolicy(max_videos=args.commit_videos),
        stall_s=args.stall_timeout, decode_workers=workers,
        on_listed=lambda n: announce and log.info("runner: %s; --runner local|ray overrides", announce),
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


def _runner(args) -> tuple[bool, int, str | None]:
    """(on Ray, decode workers in this process, what to announce).  A named cluster (--ray-address,
    $RAY_ADDRESS) is Ray, checked in seconds before anything is written; otherwise --runner, whose
    `auto` follows pipelines.options.choose_runner and says what it chose, once, when the inputs
    have been listed."""
    from pipelines.cluster import check_reachable, cluster_address
    from pipelines.options import choose_runner

    runner = "local" if args.local else args.runner
    if args.local and args.runner == "ray":
        raise InputError("--local and --runner ray contradict each other")
    if runner == "local" and args.ray_address:
        raise InputError("--ray-address runs on that cluster: drop --local / --runner local")
    address, source = cluster_address(args.ray_address) if runner != "local" else (None, "")
    if address:
        check_reachable(address, source)  # a dead cluster address is one line in seconds
        return True, 1, None
    choice = choose_runner(_cores(), _gpus(args.device))
    on_ray = choice.ray if runner == "auto" else runner == "ray"
    return on_ray, args.decode_workers or choice.decode_workers or 1, choice.reason if runner == "auto" else None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _gpus(device: str) -> int:
    """GPUs the encoder may use: none for --device cpu, one for a named cuda:N, else all visible."""
    if device == "cpu" or not glob.glob("/dev/nvidia[0-9]*") and os.path.exists("/dev"):
        return 0  # no NVIDIA device node: no need to import torch (seconds) to know it
    import torch

    if not torch.cuda.is_available():
        return 0
    return 1 if device.startswith("cuda:") else torch.cuda.device_count()


def cmd_prune(args) -> int:
    lib = open_library(args, create=False)
    result = lib.store.prune()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"removed {result['removed_uris']} missing file(s) and {result['removed_videos']} video(s)")
    return 0


COMMANDS = {"ingest": cmd_ingest, "prune": cmd_prune}
