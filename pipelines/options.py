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


# Where `vidclip ingest` runs when no cluster is named (docs/performance.md has the numbers).
# Measured: on 2 cores the in-process job is 1.9-2.1x faster than local Ray (100 videos: 36.8 s vs
# 77.0 s; 40 videos: 24.9 s vs a two-raylet cluster's 43.9 s), Ray paying 10-20 s of start-up and
# object-store copies; on one H200 with 16 cores the in-process job with 15 decode children was
# decode-bound (GPU 2% busy), so Ray's decode tasks on the same cores could not do better.
# Not measured: CPU machines above 8 cores, where several 4-thread encoder actors may beat one
# torch encoder (intra-op scaling was measured linear only to 2 threads), and machines with several
# GPUs, where one encoder actor per GPU uses GPUs the in-process job leaves idle.
LOCAL_MAX_CORES = 8


@dataclass(frozen=True)
class RunnerChoice:
    """ray: run the Ray Data job (on a local cluster, JobOptions sizes it); otherwise in this process
    with `decode_workers` decode children.  reason: the line the CLI prints once."""

    ray: bool
    decode_workers: int | None
    reason: str


def choose_runner(cores: int, gpus: int) -> RunnerChoice:
    """The runner for a machine with `cores` CPUs and `gpus` GPUs when no cluster was named."""
    cores = max(1, int(cores))
    if gpus >= 2:
        return RunnerChoice(True, None, f"local Ray: {gpus} GPUs, one encoder actor each")
    if gpus == 1:
        workers = max(1, cores - 1)
        return RunnerChoice(False, workers, f"in-process: 1 GPU, {workers} decode worker(s) on {cores} cores "
                                            "(decoding, not the GPU, is the limit)")
    if cores > LOCAL_MAX_CORES:
        return RunnerChoice(True, None, f"local Ray: {cores} cores, no GPU (encoder actors share them)")
    workers = max(1, round(cores * (1 - ENCODE_SHARE)))
    return RunnerChoice(False, workers, f"in-process: {cores} cores, no GPU, {workers} decode worker(s) "
                                        "(local Ray was 2x slower on 2 cores)")
