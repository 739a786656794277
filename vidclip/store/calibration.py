"""Calibration queries: the vectors on which `vidclip index` measures recall@10 to choose its
query-time settings (nprobes, refine_factor).

A user's text query is out of distribution for a table of image-tower vectors (CLIP's modality gap:
its best cosine to any clip is ~0.3-0.4, against ~0.75 for another frame), and an IVF index needs
several times more partitions probed for such a query to keep its recall (benchmarks/ann.py on hard
data).  Settings calibrated on stored vectors therefore under-provision text search.  So the default
calibration set is `PROMPTS`, encoded by the store's own text tower: real text queries, in the
store's own embedding space.  Stored-vector queries (`stored_queries`) remain for a store whose
model cannot be loaded where the index is built; the report and the store record which set was used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vidclip.store.schema import vectors_of

# Descriptions as users type them into video search: people, animals, vehicles, places, sports,
# screens and text, weather, close-ups, short and long.  Order is fixed: calibration is
# deterministic for a given model.
PROMPTS = (
    "a dog catches a frisbee on the beach",
    "a cat sleeping on a sofa",
    "a man riding a bicycle down a city street",
    "children playing football in a park",
    "a woman cooking pasta in a kitchen",
    "cars driving on a highway at night",
    "a plane taking off from a runway",
    "waves crashing on rocks",
    "a person typing on a laptop",
    "a crowd cheering at a concert",
    "snow falling in a forest",
    "a close-up of a flower",
    "a chef chopping vegetables",
    "a train arriving at a station",
    "a horse running in a field",
    "two people shaking hands in an office",
    "a birthday cake with candles",
    "fireworks over a city",
    "a skateboarder doing a trick",
    "a baby laughing",
    "rain on a window",
    "a man giving a speech on stage",
    "a boat sailing on a lake",
    "a busy market with people shopping",
    "a basketball player dunking",
    "a bird flying over the ocean",
    "someone pouring coffee into a cup",
    "a mountain landscape at sunrise",
    "a red car parked on the street",
    "a group of friends eating dinner",
    "a person running on a treadmill",
    "a news anchor at a desk",
    "a slide with a chart and text",
    "a video game on a screen",
    "hands playing a piano",
    "a tennis match",
    "a drone shot of a coastline",
    "a police car with flashing lights",
    "a couple dancing at a wedding",
    "a construction site with a crane",
    "a fish swimming in an aquarium",
    "a man fixing a car engine",
    "people walking through an airport",
    "a sunset over the desert",
    "a student writing on a whiteboard",
    "a dog running through snow",
    "a goal scored in a football match",
    "a kitchen on fire",
    "a cyclist racing in the mountains",
    "a woman doing yoga on a mat",
    "a street at night with neon signs",
    "an interview with two people sitting",
    "a cow grazing in a meadow",
    "a surfer riding a wave",
    "a toddler building with blocks",
    "a helicopter landing",
    "a spoon stirring soup",
    "a person opening a gift",
    "lightning during a storm",
    "an empty classroom",
    "a motorcycle speeding on a road",
    "a doctor talking to a patient",
    "a timelapse of clouds",
    "a person walking a dog in the rain",
    "a product unboxing on a table",
    "a choir singing in a church",
    "a soldier marching",
    "a tractor in a wheat field",
    "someone painting on a canvas",
    "a close-up of a person's face talking",
    "a crowded subway car",
    "a swimmer diving into a pool",
    "a waterfall in a jungle",
    "a map on a screen",
    "people protesting in the street",
    "a monkey eating a banana",
    "a man chopping wood",
    "a race car on a track",
    "a family watching television",
    "a person skiing down a slope",
    "a bee on a flower",
    "a cartoon character",
    "a bus stopping at a bus stop",
    "a volcano erupting",
    "a person reading a book in a library",
    "a hand writing with a pen",
    "a shopping mall escalator",
    "a bride walking down the aisle",
    "a lion in the savanna",
    "someone taking a selfie",
    "a garden with a fountain",
    "a car crash",
    "a pilot in a cockpit",
    "a laboratory with scientists",
    "a fisherman on a boat",
    "the moon in the night sky",
)


TEXT = "text prompts"
STORED = "stored vectors"


@dataclass(frozen=True)
class CalibrationSet:
    """Query vectors for calibration, and what they are (recorded in the store's index entry)."""

    source: str  # TEXT or STORED
    vectors: np.ndarray  # (Q, D) float32, L2-normalised

    @property
    def label(self) -> str:
        return f"{len(self.vectors)} {self.source}"


def text_queries(encode_text: Callable[[Sequence[str]], object], prompts: Sequence[str] = PROMPTS) -> CalibrationSet:
    """`prompts` through a text tower (`encode_text(list of str)` -> (Q, D) tensor or array)."""
    out = encode_text(list(prompts))
    vecs = np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32)  # (Q, D)
    vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    return CalibrationSet(TEXT, vecs)


def stored_queries(tbl, n: int = len(PROMPTS), seed: int = 0) -> CalibrationSet:
    """Query-like vectors near the data, L2-normalised, in three equal parts: stored vectors with a
    little noise (norm 0.25: like another member of their neighbourhood, where near-ties make
    quantised codes err), stored vectors with noise of their own norm (cosine ~0.7 to the source),
    and midpoints of two stored vectors.  In distribution, so settings chosen on them suit image and
    video queries better than text ones."""
    rng = np.random.default_rng(seed)
    rows = tbl.count_rows()
    take = np.sort(rng.choice(rows, size=min(rows, 2 * n), replace=False))
    vecs = vectors_of(tbl.take_offsets([int(i) for i in take]).select(["vector"]).to_arrow().column("vector"))
    vecs = vecs[rng.permutation(len(vecs))]  # (2n, D)
    half = len(vecs) // 2
    a, b = vecs[:half], vecs[half:2 * half]  # (n, D) each
    noise = rng.standard_normal(a.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)  # (n, D) unit
    third = half // 3
    q = np.concatenate([a[:third] + 0.25 * noise[:third],
                        a[third:2 * third] + noise[third:2 * third],
                        a[2 * third:] + b[2 * third:]])  # (n, D)
    return CalibrationSet(STORED, q / np.linalg.norm(q, axis=1, keepdims=True))
