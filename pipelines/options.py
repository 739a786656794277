"""Options of the Ray ingestion job, built once at the edge (CLI or API)."""

from __future__ import annotations

import os
from dataclasses import dataclass


# On CPU, encoding a sampled frame costs far more than decoding it.  Measured on this project's
# 2-core dev machine (docs/performance.md): ViT-B-32 encodes 8.6 images/s on one thread (0.116 s a
# frame), and decoding at 1 frame/s costs 0.013-0.028 CPU-s a sampled frame (360p short-GOP to 720p
# long-GOP H.264).  Cores split in proportion to the work: 0.116 / (0.116 + 0.028) = 0.8.
ENCODE_SHARE = 0.8
# torch's intra-op scaling was measured linear to 2 threads here (16.3 vs 8.6 images/s); past 4 it
# is unmeasured, so actors stay small and numerous.
ACTOR_THREADS = 4


@dataclass(frozen=True)
class JobOptions:
    """How the job uses Ray.

    ray_address: None starts a local Ray on demand (bound to 127.0.0.1, dashboard off);
    "auto" or "HOST:PORT" / "ray://HOST:PORT" joins an existing cluster.
    decode_workers: concurrent CPU decode tasks (default: CPUs minus one for the encoder, >= 1).
    encode_actors: encoder actors (default: one per GPU; on CPU, ENCODE_SHARE of the cores in
    actors of up to ACTOR_THREADS threads each, `resolved_encoders`).
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

    def resolved_encoders(self, cluster_gpus: float, cluster_cpus: float, node_cpus: float) -> tuple[int, int]:
        """(encoder actors, CPU threads each).  With GPUs: one actor per GPU (its CPU thread count is
        left to torch).  On a CPU cluster the encoder, not decoding, is the bottleneck, so the
        actors get ENCODE_SHARE of the cores, in actors of up to ACTOR_THREADS threads that fit on
        one node (`node_cpus`: the smallest node's CPUs), leaving at least one core for decoding."""
        if cluster_gpus >= 1:
            return (self.encode_actors or max(1, int(cluster_gpus))), 0
        threads = max(1, min(ACTOR_THREADS, int(node_cpus), int(cluster_cpus) - 1))  # a core left to decode
        if self.encode_actors:
            return self.encode_actors, threads
        budget = min(cluster_cpus * ENCODE_SHARE, cluster_cpus - 1)  # one core always decodes
        return max(1, int(budget // threads)), threads


def default_object_store_bytes() -> int:
    """A bounded object store for a local cluster: 25% of RAM, at most 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return int(min(4 << 30, max(512 << 20, total // 4)))
