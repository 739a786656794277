"""Re-ranker benchmark: does re-scoring first-stage candidates on frame vectors find a short moment
inside a long clip better than the clip vector alone?

Synthetic set: `n_videos` generated videos of `duration_s` seconds, one scene per `scene_s` seconds,
ingested with clips of `clip_s` seconds (several scenes per clip, so a clip's mean vector dilutes
each scene).  Queries: one picture from the middle of every scene.  A query is right at R@1 when the
top hit is its video and the hit's clip contains the query time.

    python -m benchmarks.rerank [--model-config tests/models/vidclip-tiny.json] [--videos 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

MODES = (None, "mean", "max", "fusion")


def run(work: str | Path, model, n_videos: int = 6, duration_s: float = 8.0, scene_s: float = 1.0,
        clip_s: float = 8.0, fps: float = 2.0, alpha: float = 0.5) -> dict:
    import vidclip
    from vidclip.config import SamplingConfig
    from vidclip.samples.synth import VideoSpec, draw_frame, write_video

    work = Path(work)
    (work / "videos").mkdir(parents=True, exist_ok=True)
    specs = {}
    for i in range(n_videos):
        spec = VideoSpec(codec="h264", width=160, height=120, duration_s=duration_s, seed=100 + i, scene_seconds=scene_s)
        path = write_video(work / "videos" / f"v{i}.mp4", spec)
        specs[str(path)] = spec
    lib = vidclip.open(work / "db", model=model)
    lib.ingest([work / "videos"], SamplingConfig(fps=fps, clip_seconds=clip_s, max_frames=int(clip_s * fps)), progress=False)
    queries = [(uri, (s + 0.5) * scene_s) for uri, spec in specs.items() for s in range(int(duration_s / scene_s))]
    result = {"queries": len(queries), "videos": n_videos, "clip_s": clip_s, "scene_s": scene_s, "alpha": alpha}
    for mode in MODES:
        right = 0
        for uri, t in queries:
            top = lib.search(image=draw_frame(specs[uri], t), k=1, rerank=mode, alpha=alpha)[0]
            right += top.uri == uri and top.clip_start_s <= t < top.clip_end_s
        result[f"R@1 {mode or 'first-stage'}"] = round(100.0 * right / len(queries), 1)
    return result


def main() -> None:
    from vidclip.config import ModelConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-config", default=str(Path(__file__).resolve().parents[1] / "tests" / "models" / "vidclip-tiny.json"))
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--clip-seconds", type=float, default=8.0)
    args = ap.parse_args()
    model = ModelConfig(name=Path(args.model_config).stem, pretrained="none", config_path=args.model_config)
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(tmp, model, n_videos=args.videos, clip_s=args.clip_seconds), indent=1))


if __name__ == "__main__":
    main()
