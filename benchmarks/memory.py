"""Peak memory of one-video ingests: the driver and its decode child, by video length and frame shape.

    vidclip bench memory [--model ViT-B-32] [--model-config JSON] [--lengths 1 20 40] [--shapes]
    (or: python3 -m benchmarks.memory ...)

Each case is one `vidclip.open(...).ingest([video], fps=1)` with `--local` semantics (the decode
sandbox on) in a fresh Python process, random weights on CPU, into a new store.  Reported per case:
the driver's own peak RSS (`ru_maxrss` of the process) and the decode child's (`RUSAGE_CHILDREN`,
the largest child the driver waited for), sampled frames, and the refusal reason when the input is
refused.  Cases:
- lengths: a 160x120 H.264 video at 25 fps, 1 / 20 / 40 minutes (the issue's growth case; over
  54,000 frames is decoded by PyAV first, docs/ingest.md);
- shapes: 2-minute 2 fps H.264 at 1280x720 (16:9), 7168x448 (16:1, the widest shape accepted:
  9.6 MB frames at ViT-B-32's decode size) and 16384x16 (1024:1, refused before decoding).
Ratios: each length against 1 minute, each shape against 16:9.  The peak includes the model
(ViT-B-32's driver is about 2.2 GB on its own here), so the differences are what the input costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchmarks import corpus

MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    import vidclip
    from vidclip.config import ModelConfig, SamplingConfig

    model = ModelConfig(name={model!r}, pretrained="none", config_path={config!r}, device="cpu")
    report = vidclip.open({db!r}, model=model).ingest([{video!r}], SamplingConfig(fps=1.0), progress=False)
    print(json.dumps({{"ok": report.ok, "failed": report.failed, "frames": report.frames,
                      "reasons": [f["error"] for f in report.failures],
                      "driver_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
    """
)


def lengths_set(minutes: list[float]) -> list[corpus.CorpusVideo]:
    return [corpus.CorpusVideo("h264", "120p", 60.0 * m, 10, fps=25, scene_s=10.0) for m in minutes]


SHAPES_SET = [
    corpus.CorpusVideo("h264", "720p", 120.0, 10, fps=2),
    corpus.CorpusVideo("h264", "stripe7168x448", 120.0, 10, fps=2),
    corpus.CorpusVideo("h264", "stripe16384x16", 10.0, 10, fps=2),
]


def measure(video: Path, model: str, config: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = MEASURE.format(model=model, config=config, db=str(Path(tmp) / "db"), video=str(video))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=7200,
                              env=dict(os.environ, TQDM_DISABLE="1"))
    if done.returncode != 0:
        raise RuntimeError(f"ingest of {video.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(minutes: list[float], shapes: bool, model: str, config: str | None, cache: Path = corpus.DEFAULT_CACHE,
        log=print) -> dict:
    cases: list[dict] = []
    groups = [("length", lengths_set(minutes))] + ([("shape", SHAPES_SET)] if shapes else [])
    for group, videos in groups:
        for v, path in zip(videos, corpus.ensure(videos, cache, log)):
            out = measure(path, model, config)
            w, h = corpus.RESOLUTIONS[v.res]
            out.update(group=group, video=v.name, width=w, height=h, minutes=v.duration_s / 60)
            log(f"{v.name}: driver {out['driver_mb']:.0f} MB, child {out['child_mb']:.0f} MB, {out['frames']} frames"
                + (f", refused: {out['reasons'][0]}" if out["reasons"] else ""))
            cases.append(out)
    ratios = {}
    for group, base_of in (("length", lambda c: c["minutes"] == min(minutes)), ("shape", lambda c: c["width"] == 1280)):
        members = [c for c in cases if c["group"] == group]
        base = next((c for c in members if base_of(c)), None)
        for c in members:
            if base is not None and c is not base and c["ok"]:
                ratios[c["video"]] = {k: round(c[k] / base[k], 3) for k in ("driver_mb", "child_mb")}
    return {"benchmark": "memory", "machine": corpus.machine_info(), "model": model, "model_config": config,
            "cases": cases, "ratios": ratios}


def add_arguments(ap) -> None:
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--model-config", default=None, help="open_clip model-config JSON registering --model")
    ap.add_argument("--lengths", type=float, nargs="*", default=[1, 20, 40], help="minutes of the 160x120 video")
    ap.add_argument("--no-shapes", dest="shapes", action="store_false", help="skip the 16:9 / 16:1 / 1024:1 cases")
    ap.add_argument("--out", default="benchmarks/memory.json")


def cli(args) -> int:
    result = run(sorted(args.lengths), args.shapes, args.model, args.model_config)
    for name, r in result["ratios"].items():
        print(f"{name}: driver x{r['driver_mb']:.2f}, decode child x{r['child_mb']:.2f} (vs the group's base case)")
    print(f"wrote {corpus.write_result(args.out, result)}")
    return 0


def main(argv=None) -> int:
    return corpus.run_main(__doc__, add_arguments, cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
