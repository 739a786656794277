"""Options of the Ray ingestion job, built once at the edge (CLI or API)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class JobOptions:
    """How the job uses Ray.

    ray_address: None starts a local Ray on demand (bound to 127.0.0.1, dashboard off);
    "auto" or "HOST:PORT" / "ray://HOST:PORT" joins an existing cluster.
    decode_workers: concurrent CPU decode tasks (default: CPUs minus one for the encoder, >= 1).
    encode_actors: encoder actors (default: one per GPU, or 1 on CPU).
    batch_size: frames per encoder forward pass, built across videos.
    """

    ray_address: str | None = None
    decode_workers: int | None = None
    encode_actors: int | None = None
    batch_size: int = 64
    object_store_bytes: int | None = None
    hash_batch: int = 64

    def resolved_decode_workers(self, cluster_cpus: float, encoder_cpus: float = 0.0) -> int:
        """Decode tasks never take the CPUs the encoder actors hold (that would deadlock)."""
        free = max(1, int(cluster_cpus - encoder_cpus))
        return min(self.decode_workers, free) if self.decode_workers else free

    def resolved_encode_actors(self, cluster_gpus: float) -> int:
        if self.encode_actors:
            return self.encode_actors
        return max(1, int(cluster_gpus))


def default_object_store_bytes() -> int:
    """A bounded object store for a local cluster: 25% of RAM, at most 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return int(min(4 << 30, max(512 << 20, total // 4)))
