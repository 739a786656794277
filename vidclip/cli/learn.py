"""`vidclip train`, `eval`, `reindex` and `import-clip4clip`: learning a temporal module from
stored frames, and bringing one in from CLIP4Clip.

Wired into vidclip/cli/main.py with `add_parsers(sub)` and `COMMANDS`.  Heavy imports (torch,
lancedb) happen inside the commands, so importing this module stays cheap.
"""

from __future__ import annotations

import json

from vidclip.cli.arguments import fraction as _fraction
from vidclip.cli.arguments import positive_float as _positive_float
from vidclip.cli.arguments import add_store_args, storage_options
from vidclip.cli.arguments import positive_int as _positive_int


def add_parsers(subparsers) -> None:
    """Add the train, eval and reindex subcommands (`subparsers` already carries the parser class)."""
    p = subparsers.add_parser("train", help="train a temporal module on captions and the store's frame vectors")
    add_store_args(p)
    p.add_argument("--captions", required=True, metavar="FILE",
                   help="captions: .jsonl/.json/.csv rows of video, caption[, start_s, end_s], or MSR-VTT files")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory to write (config, weights, metrics.json)")
    p.add_argument("--temporal", choices=["seq_transformer", "seq_lstm"], default="seq_transformer",
                   help="the module to train (default seq_transformer, CLIP4Clip's seqTransf)")
    p.add_argument("--epochs", type=_positive_int, default=5, help="passes over the captions (default 5)")
    p.add_argument("--lr", type=_positive_float, default=1e-4, help="learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="captions per step (default 128)")
    p.add_argument("--val-fraction", type=_fraction, default=0.1, help="share of videos held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation, split and shuffling (default 0)")
    p.add_argument("--skip-missing", action="store_true", help="skip captions of videos not in the store")
    p.add_argument("--device", default="cpu",
                   help="where the CLIP text tower and the module run: cpu (default, bit-for-bit reproducible), cuda, auto")
    p.add_argument("--json", action="store_true", help="print the training report (metrics.json) as JSON")

    p = subparsers.add_parser("eval", help="text<->video retrieval metrics (CLIP4Clip protocol) on captions")
    add_store_args(p)
    p.add_argument("--captions", required=True, metavar="FILE", help="captions (same formats as train)")
    p.add_argument("--temporal", metavar="mean|CKPT_DIR", help="temporal module (default: the store's own)")
    p.add_argument("--skip-missing", action="store_true", help="skip captions of videos not in the store")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")

    p = subparsers.add_parser("reindex", help="recompute clip and video vectors from stored frames with a temporal module")
    add_store_args(p)
    p.add_argument("--temporal", required=True, metavar="mean|CKPT_DIR", help="'mean' or a checkpoint from 'vidclip train'")
    p.add_argument("--clips", choices=["fixed", "shots"],
                   help="switch the clip mode: fixed windows, or shots cut where stored frame vectors turn apart "
                        "(to within one sampling interval; default: keep the store's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = subparsers.add_parser("import-clip4clip", help="convert a CLIP4Clip checkpoint (meanP, seqLSTM, seqTransf) "
                              "into open_clip weights and a temporal checkpoint")
    p.add_argument("checkpoint", metavar="CKPT", help="CLIP4Clip state dict (pytorch_model.bin.N)")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/clip.safetensors and DIR/temporal/")
    p.add_argument("--model", help="open_clip architecture of its CLIP weights (default: inferred from their shapes)")
    p.add_argument("--model-config", help="open_clip model config JSON registering a custom architecture")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _library(args):
    import vidclip

    return vidclip.open(args.db, device=getattr(args, "device", "auto"), create=False, storage_options=storage_options(args))


def cmd_train(args) -> int:
    from vidclip.learn import captions
    from vidclip.learn.training import TrainConfig, train_store

    lib = _library(args)
    sampling = lib.store.meta.get("sampling") or {}
    config = TrainConfig(
        temporal=args.temporal, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        val_fraction=args.val_fraction, seed=args.seed, max_frames=int(sampling.get("max_frames", 12)),
    )
    matched = captions.load(args.captions, lib.store, skip_missing=args.skip_missing)
    report = train_store(lib, matched, args.out, config, progress=not args.json, device=str(lib.encoder.device))
    if args.json:
        print(json.dumps(report))
    else:
        best = report["best"]
        val = best.get("val")
        detail = f", val t2v R@1 {val['t2v']['R1']:.1f}" if val else ""
        print(f"trained {report['temporal']} on {report['data']['captions']} caption(s) in {report['seconds']:.1f}s: "
              f"best epoch {report['best_epoch']} by {report['selected_by']}{detail}")
        if report["data"]["skipped"]:
            print(f"  skipped {report['data']['skipped']} caption(s) of videos not in the store")
        print(f"  checkpoint: {report['checkpoint']}")
    return 0


def cmd_eval(args) -> int:
    from vidclip.learn import captions
    from vidclip.learn.evaluation import evaluate_store

    lib = _library(args)
    matched = captions.load(args.captions, lib.store, skip_missing=args.skip_missing)
    result = evaluate_store(lib, matched, args.temporal)
    if args.json:
        print(json.dumps(result))
        return 0
    spec = result["temporal"]
    print(f"{result['captions']} caption(s), {result['videos']} video(s), temporal {spec.get('checkpoint') or spec['name']}"
          + (f", {result['skipped']} caption(s) skipped" if result["skipped"] else ""))
    for name, m in (("t2v", result["t2v"]), ("v2t", result["v2t"]),
                    ("t2v dsl*", result["dsl"]["t2v"]), ("v2t dsl*", result["dsl"]["v2t"])):
        print(f"  {name:9s} R@1 {m['R1']:5.1f}  R@5 {m['R5']:5.1f}  R@10 {m['R10']:5.1f}  MdR {m['MdR']:.1f}  MnR {m['MnR']:.1f}")
    print("  * dual-softmax: offline only (needs every query at once); never at serving time")
    return 0


def cmd_reindex(args) -> int:
    from vidclip.learn.reindex import reindex
    from vidclip.store.store import Store

    store = Store.open(args.db, storage_options=storage_options(args))
    report = reindex(store, args.temporal, clips=args.clips, progress=not args.json)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"re-aggregated {report.videos} video(s): {report.clips} clips from {report.frames} frames "
              f"in {report.seconds:.1f}s with {report.temporal.get('checkpoint') or report.temporal['name']}")
        print(f"  now serving {report.tables['clip']}, {report.tables['video']}; dropped {', '.join(report.dropped) or 'nothing'}")
    return 0


def cmd_import_clip4clip(args) -> int:
    from vidclip.model.clip4clip import import_clip4clip

    report = import_clip4clip(args.checkpoint, args.out, model=args.model, model_config=args.model_config)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    config = f" --model-config {args.model_config}" if args.model_config else ""
    print(f"imported {report.sim_header} -> {report.temporal} for {report.model}: {report.clip_weights}, {report.temporal_dir}")
    print(f"  next: vidclip ingest VIDEOS --db DB --model {report.model} --pretrained {report.clip_weights}{config}")
    print(f"        vidclip reindex --db DB --temporal {report.temporal_dir}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "reindex": cmd_reindex, "import-clip4clip": cmd_import_clip4clip}
