"""vidclip: text-to-video search on frame-level CLIP, stored in LanceDB.

Importing vidclip never imports ray; the Ray pipeline is loaded only when used.
"""

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
