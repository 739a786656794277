"""Videos with known shot boundaries: the ground truth for shot detection (tests and benchmarks).

A `ShotScript` is a sequence of shots with a transition between each two: a hard cut, or a
dissolve over some seconds.  Each shot has its own look (a natural texture, `natural_frame`, with
its own seed) and its own motion:

* ``static``: a locked-off camera; only grain changes (a detector must find nothing inside it);
* ``pan``: a slow camera pan (4% of the width per second);
* ``fast``: a fast pan (80% of the width per second, back and forth): large frame-to-frame change
  that is not a cut;
* ``flash``: a slow pan with a two-frame white flash in its middle: a classic false cut.

`boundaries()` gives every transition as a `Boundary` with its kind and its span (a cut is the
instant the new shot's first frame is shown; a dissolve spans its blend).  `score_boundaries`
matches detected times to them one to one within a tolerance and reports precision, recall and F1,
per kind and overall.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

MOTIONS = ("static", "pan", "fast", "flash")


@dataclass(frozen=True)
class Shot:
    seconds: float
    motion: str = "pan"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"motion must be one of {MOTIONS}, got {self.motion!r}")
        if not self.seconds > 0:
            raise ValueError(f"a shot lasts > 0 s, got {self.seconds}")


@dataclass(frozen=True)
class Transition:
    kind: str = "cut"  # "cut" | "dissolve"
    seconds: float = 0.0  # a dissolve's length, centred on the nominal boundary

    def __post_init__(self) -> None:
        if self.kind not in ("cut", "dissolve"):
            raise ValueError(f"transition kind must be cut or dissolve, got {self.kind!r}")
        if (self.kind == "dissolve") != (self.seconds > 0):
            raise ValueError("a dissolve has a length > 0, a cut has none")


@dataclass(frozen=True)
class Boundary:
    kind: str
    start_s: float  # a cut: start_s == end_s, the time its new shot appears
    end_s: float

    @property
    def t(self) -> float:
        return (self.start_s + self.end_s) / 2


@dataclass(frozen=True)
class ShotScript:
    shots: tuple[Shot, ...]
    transitions: tuple[Transition, ...]  # between shot i and i + 1

    def __post_init__(self) -> None:
        if len(self.transitions) != len(self.shots) - 1:
            raise ValueError("one transition between each two shots")
        for i, tr in enumerate(self.transitions):
            if tr.seconds / 2 >= min(self.shots[i].seconds, self.shots[i + 1].seconds) / 2:
                raise ValueError(f"dissolve {i} is longer than the shots it joins")

    @property
    def duration_s(self) -> float:
        return float(sum(s.seconds for s in self.shots))

    def starts(self) -> np.ndarray:
        """(S,) nominal start time of each shot."""
        return np.concatenate([[0.0], np.cumsum([s.seconds for s in self.shots])[:-1]])

    def boundaries(self, fps: float) -> list[Boundary]:
        """Every transition, on the frame grid of a `fps` video: a cut at the first frame of its new
        shot, a dissolve from its first blended frame to its last."""
        out = []
        for tr, t in zip(self.transitions, self.starts()[1:]):
            if tr.kind == "cut":
                first = np.ceil(t * fps - 1e-9) / fps
                out.append(Boundary("cut", float(first), float(first)))
            else:
                lo, hi = t - tr.seconds / 2, t + tr.seconds / 2
                out.append(Boundary("dissolve", float(np.ceil(lo * fps - 1e-9) / fps), float(np.floor(hi * fps + 1e-9) / fps)))
        return out

    def draw(self, width: int, height: int, fps: float) -> Callable[[float], np.ndarray]:
        """draw(t) -> (height, width, 3) uint8, the picture shown at t."""
        from vidclip.samples.synth import natural_frame

        starts = self.starts()
        textures: dict[int, np.ndarray] = {}
        grain = np.random.default_rng(12345)

        def texture(i: int) -> np.ndarray:
            if i not in textures:
                if len(textures) > 3:
                    textures.pop(min(textures))
                textures[i] = natural_frame(3 * width, 2 * height, seed=1000 + self.shots[i].seed)
            return textures[i]

        def shot_picture(i: int, t: float) -> np.ndarray:
            shot, local = self.shots[i], t - starts[i]
            speed = {"static": 0.0, "pan": 0.04, "fast": 0.8, "flash": 0.04}[shot.motion] * width
            span = 2 * width  # the window moves back and forth across the texture
            pos = (speed * local) % (2 * span)
            x = int(pos if pos < span else 2 * span - pos)
            ypos = (0.5 * speed * local) % (2 * height)
            y = int(ypos if ypos < height else 2 * height - ypos)
            pic = texture(i)[y : y + height, x : x + width].astype(np.float32)
            if shot.motion == "flash" and abs(local - shot.seconds / 2) < 1.0 / fps:
                pic = np.full_like(pic, 250.0)  # two frames of white
            return pic

        def draw(t: float) -> np.ndarray:
            i = int(np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(self.shots) - 1))
            pic = shot_picture(i, t)
            # inside a dissolve: blend with the neighbouring shot
            if i > 0 and self.transitions[i - 1].kind == "dissolve":
                half = self.transitions[i - 1].seconds / 2
                if t - starts[i] < half:
                    a = 0.5 + (t - starts[i]) / (2 * half)  # weight of the new shot: 0.5 -> 1
                    pic = a * pic + (1 - a) * shot_picture(i - 1, t)
            if i + 1 < len(self.shots) and self.transitions[i].kind == "dissolve":
                half = self.transitions[i].seconds / 2
                if starts[i + 1] - t <= half:
                    a = 0.5 + (starts[i + 1] - t) / (2 * half)  # weight of this shot: 1 -> 0.5
                    pic = a * pic + (1 - a) * shot_picture(i + 1, t)
            pic += grain.normal(0, 2.0, size=(height, width, 1)).astype(np.float32)
            return np.clip(pic, 0, 255).astype(np.uint8)

        return draw


def standard_script(seed: int = 0) -> ShotScript:
    """The corpus the shot-detection issue asks for: hard cuts at times off any sampling grid,
    dissolves of 0.5 and 1 s, fast motion inside a shot, a flash, a static shot and a long single
    shot (12.3 s); 10 shots, 51.1 s."""
    s = seed * 100
    shots = (
        Shot(3.37, "pan", s + 1), Shot(4.71, "static", s + 2), Shot(2.83, "fast", s + 3), Shot(5.29, "pan", s + 4),
        Shot(4.13, "flash", s + 5), Shot(3.61, "pan", s + 6), Shot(12.3, "pan", s + 7), Shot(2.57, "static", s + 8),
        Shot(6.43, "fast", s + 9), Shot(5.86, "pan", s + 10),
    )
    cut, dis5, dis10 = Transition(), Transition("dissolve", 0.5), Transition("dissolve", 1.0)
    return ShotScript(shots, (cut, cut, dis5, cut, cut, dis10, cut, cut, dis5))


def random_script(seed: int, shots: int = 9) -> ShotScript:
    """A held-out script: shot lengths 1.6-8 s, motions drawn (static 20%, pan 45%, fast 20%,
    flash 15%), 70% hard cuts and 30% dissolves of 0.5, 0.75 or 1 s; redrawn until drawable."""
    rng = np.random.default_rng(seed)
    while True:
        drawn = tuple(Shot(float(rng.uniform(1.6, 8.0)), str(rng.choice(MOTIONS, p=[0.2, 0.45, 0.2, 0.15])),
                           seed * 50 + i) for i in range(shots))
        trans = tuple(Transition() if rng.random() < 0.7 else Transition("dissolve", float(rng.choice([0.5, 0.75, 1.0])))
                      for _ in range(shots - 1))
        try:
            return ShotScript(drawn, trans)
        except ValueError:
            continue


def write_shot_video(path: str | os.PathLike, script: ShotScript, width: int = 320, height: int = 180,
                     fps: float = 25.0, codec: str = "h264", gop: int | None = None) -> Path:
    """Encode `script` (the encoder's own keyframe placement unless `gop` fixes it)."""
    from vidclip.samples.synth import VideoSpec, _encode

    spec = VideoSpec(codec=codec, width=width, height=height, fps=fps, duration_s=script.duration_s, gop=gop)
    return _encode(Path(path), spec, script.draw(width, height, fps))


def score_boundaries(found: Sequence[float], truth: Sequence[Boundary], tolerance_s: float = 0.5) -> dict:
    """Match detected boundary times to true boundaries one to one: a time matches a boundary when
    it lies within `tolerance_s` of its span (a cut's instant, a dissolve's blend).  Pairs are taken
    closest first.  Returns precision, recall and F1 overall, and recall per kind."""
    found = sorted(float(t) for t in found)
    pairs = []
    for j, b in enumerate(truth):
        for i, t in enumerate(found):
            gap = max(b.start_s - t, t - b.end_s, 0.0)
            if gap <= tolerance_s + 1e-9:
                pairs.append((gap, i, j))
    used_found, used_truth = set(), set()
    for gap, i, j in sorted(pairs):
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
    tp = len(used_truth)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    kinds = sorted({b.kind for b in truth})
    per_kind = {k: sum(1 for j in used_truth if truth[j].kind == k) / sum(1 for b in truth if b.kind == k) for k in kinds}
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": len(found) - tp,
            "fn": len(truth) - tp, "recall_by_kind": per_kind}
