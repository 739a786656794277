"""A synthetic benchmark whose captions depend on temporal order, on vectors only (no videos).

    python3 -m benchmarks.order [--json] [--out FILE]

K concept vectors c_1..c_K (random unit vectors, D dims).  A "video" for the ordered pair (a, b)
shows concept a for its first frames and b for the rest (each frame: the concept plus noise,
normalised; the switch point varies).  Its caption "a then b" has the vector

    text(a, b) = normalize(c_a + c_b + w * (R_first c_a + R_second c_b))

with R_first, R_second fixed random rotations binding each concept to its role (a stand-in for
what a text tower does with word order).  The test gallery holds both orders of every pair, with
fresh noise.  Mean pooling sees {a, b} but not the order: it finds the right pair and then
guesses, so its R@1 sits near 50% (and chance is 1/#videos).  A seq_transformer trained with the
same code as `vidclip train` (vidclip.learn.training.fit: InfoNCE, learnable temperature, AdamW,
validation split by video, best epoch) must tell the orders apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger("pipelines")


@dataclass(frozen=True)
class OrderBenchmark:
    concepts: int = 12
    dim: int = 64
    frames: int = 12  # per video (= max_frames)
    train_per_pair: int = 6  # training videos per ordered pair (fresh noise each)
    noise: float = 0.5  # per-frame noise, relative to the unit concept vector
    role_weight: float = 1.0  # w: how much of the caption vector encodes who came first
    seed: int = 0


def _rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))  # (D, D) orthogonal


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class World:
    """The fixed concepts and role bindings of one benchmark."""

    def __init__(self, bench: OrderBenchmark):
        rng = np.random.default_rng(bench.seed)
        self.bench = bench
        self.concepts = _unit(rng.standard_normal((bench.concepts, bench.dim)))  # (K, D)
        self.first = _rotation(rng, bench.dim)  # (D, D)
        self.second = _rotation(rng, bench.dim)  # (D, D)
        self.pairs = [(a, b) for a in range(bench.concepts) for b in range(bench.concepts) if a != b]

    def text(self, a: int, b: int) -> np.ndarray:
        c = self.concepts
        role = self.first @ c[a] + self.second @ c[b]  # (D,)
        return _unit(c[a] + c[b] + self.bench.role_weight * role / np.sqrt(2))  # (D,)

    def video(self, a: int, b: int, rng: np.random.Generator) -> np.ndarray:
        T = self.bench.frames
        switch = int(rng.integers(T // 3, T - T // 3 + 1))  # first concept's frame count
        base = np.where(np.arange(T)[:, None] < switch, self.concepts[a], self.concepts[b])  # (T, D)
        noise = rng.standard_normal((T, self.bench.dim)) * self.bench.noise / np.sqrt(self.bench.dim)
        return _unit(base + noise).astype(np.float32)  # (T, D)

    def examples(self, per_pair: int, seed: int):
        """Examples with one caption per video, `per_pair` videos per ordered pair."""
        import torch

        from vidclip.learn.evaluation import Examples

        rng = np.random.default_rng(seed)
        frames, text, names = [], [], []
        for a, b in self.pairs:
            for i in range(per_pair):
                frames.append(self.video(a, b, rng))
                text.append(self.text(a, b))
                names.append(f"{a}-{b}-{i}")
        n = len(frames)
        return Examples(
            frames=torch.from_numpy(np.stack(frames)),  # (U, T, D)
            mask=torch.ones(n, self.bench.frames, dtype=torch.bool),  # (U, T)
            text=torch.from_numpy(np.stack(text).astype(np.float32)),  # (N, D)
            unit_of=torch.arange(n),  # (N,)
            video_of=names,
        )


def order_accuracy(sim: np.ndarray, world: World) -> float:
    """Share of captions scoring their own video above the same pair in the other order (test set,
    one video per ordered pair in `world.pairs` order)."""
    index = {p: i for i, p in enumerate(world.pairs)}
    right = [sim[i, i] > sim[i, index[(b, a)]] for i, (a, b) in enumerate(world.pairs)]
    return float(100.0 * np.mean(right))


def default_config(bench: OrderBenchmark, epochs: int = 12):
    """The TrainConfig the benchmark trains with: a 2-layer seq_transformer, a higher rate than
    CLIP4Clip's 1e-4 (random init, tiny data, a few CPU seconds)."""
    from vidclip.learn.training import TrainConfig

    return TrainConfig(
        temporal="seq_transformer", hparams=(("layers", 2),), epochs=epochs, lr=1e-3, batch_size=64,
        max_frames=bench.frames, seed=bench.seed, warmup=0.05, weight_decay=0.01,
    )


def run(bench: OrderBenchmark = OrderBenchmark(), config=None, progress: bool = False) -> dict:
    """Train on fresh training videos, then score mean pooling and the trained module on a test gallery."""
    import temporal
    from vidclip.learn.evaluation import score, similarity
    from vidclip.learn.training import fit

    started = time.perf_counter()
    world = World(bench)
    config = config or default_config(bench)
    train = world.examples(bench.train_per_pair, seed=bench.seed + 1)
    test = world.examples(1, seed=bench.seed + 2)
    result = fit(train, config, progress=progress)
    trained_seconds = time.perf_counter() - started
    out = {"benchmark": asdict(bench), "config": config.to_dict(), "chance_r1": 100.0 / test.n_units}
    for name, module in (("mean", temporal.build("mean", bench.dim)), (config.temporal, result.module)):
        metrics = score(module, test)
        out[name] = {
            "t2v": metrics["t2v"],
            "v2t": metrics["v2t"],
            "order_accuracy": order_accuracy(similarity(module, test), world),
        }
    out["train"] = {"best_epoch": result.best_epoch, "selected_by": result.select_by, "history": result.history,
                    "seconds": round(trained_seconds, 2), "videos": train.n_units}
    out["test_videos"] = test.n_units
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.order", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--out", help="also write the JSON results to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="training epochs (default 12)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest for this tiny model, above all on a busy machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    bench = OrderBenchmark(seed=args.seed)
    config = default_config(bench, args.epochs) if args.epochs else None
    result = run(bench, config, progress=not args.json)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    if args.json:
        print(json.dumps(result))
    else:
        name = result["config"]["temporal"]
        print(f"order benchmark: {result['test_videos']} test videos (both orders of {bench.concepts} concepts' pairs), "
              f"chance R@1 {result['chance_r1']:.1f}")
        for key in ("mean", name):
            m = result[key]
            print(f"  {key:16s} t2v R@1 {m['t2v']['R1']:5.1f}  R@5 {m['t2v']['R5']:5.1f}  "
                  f"order accuracy {m['order_accuracy']:5.1f}")
        print(f"  trained in {result['train']['seconds']:.1f}s (best epoch {result['train']['best_epoch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
