"""One exception hierarchy for everything vidclip raises on purpose.

A `VidclipError` is a user-facing condition: the CLI prints its message on one
line and exits non-zero, with no traceback.  Anything else is a bug.
"""

from __future__ import annotations


class VidclipError(Exception):
    """Root of every error vidclip raises deliberately."""


class InputError(VidclipError):
    """A bad argument, a missing path, an empty folder, an unreadable manifest."""


class MediaError(VidclipError):
    """One video could not be probed or decoded.  Recorded per video, never fatal to a job."""

    def __init__(self, uri: str, reason: str):
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason


class ProbeError(MediaError):
    """The container or its video stream could not be read, or was refused (e.g. over the pixel budget)."""


class DecodeError(MediaError):
    """The stream was found but frames could not be decoded."""


class ModelError(VidclipError):
    """The CLIP model could not be built or its weights could not be loaded."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights could not be fetched (offline, unknown tag) and no local file was given."""


class UnsafeCheckpointError(ModelError):
    """A checkpoint file would need unpickling arbitrary code to load; refused."""


class StoreError(VidclipError):
    """The store directory cannot be opened, read or written."""


class StoreBusyError(StoreError):
    """Another process holds the store's writer lease (vidclip/store/lease.py)."""

    def __init__(self, uri: str, reason: str):
        super().__init__(
            f"{uri}: {reason}; one writer at a time: try again when it finishes "
            "(a writer that died releases the store within a minute)"
        )
        self.uri = uri
        self.reason = reason


class StoreMismatchError(StoreError):
    """The store was built with another model / sampling / temporal setting than the one requested."""


class StallError(VidclipError):
    """A job made no progress for its stall timeout (vidclip/ingest/watchdog.py); what it committed stays."""


class QueryError(VidclipError):
    """A search request is malformed (empty query, unknown level, bad k, ...)."""
