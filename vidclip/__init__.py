"""vidclip: text-to-video search on frame-level CLIP, stored in LanceDB.

Importing vidclip never imports ray; the Ray pipeline is loaded only when used.
"""

import os as _os
import sys as _sys

# torch's OpenMP threads spin after every parallel region by default, burning the cores that the
# decode children need: `vidclip ingest` of 8 x 30 s 720p took 25.8 CPU-s with spinning threads and
# 21.4 with OMP_WAIT_POLICY=PASSIVE, and 5% less wall (2 cores; benchmarks/peer_spinning_omp.json vs peer.json).  It
# only takes effect if set before torch is imported; a value the user set is kept.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vidclip.config import DecodeConfig, ModelConfig, SamplingConfig
from vidclip.errors import (
    DecodeError,
    InputError,
    MediaError,
    ModelError,
    ProbeError,
    QueryError,
    StoreError,
    StoreMismatchError,
    UnsafeCheckpointError,
    VidclipError,
    WeightsUnavailableError,
)
from vidclip.ingest.video import IngestReport
from vidclip.library import Library, open
from vidclip.query.search import Hit, Hits

__version__ = "0.1.0"

__all__ = [
    "DecodeConfig", "DecodeError", "Hit", "Hits", "IngestReport", "InputError", "Library", "MediaError",
    "ModelConfig", "ModelError", "ProbeError", "QueryError", "SamplingConfig", "StoreError",
    "StoreMismatchError", "UnsafeCheckpointError", "VidclipError", "WeightsUnavailableError", "open",
]
