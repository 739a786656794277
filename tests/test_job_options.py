"""How the Ray job sizes its encoder actors and decode workers (no cluster needed)."""

from __future__ import annotations

import pytest

from pipelines.options import ACTOR_THREADS, ENCODE_SHARE, JobOptions


@pytest.mark.parametrize("cpus, node_cpus, want", [
    (2, 1, (1, 1)),      # this machine as two raylets: one 1-thread actor, one decode worker
    (2, 2, (1, 1)),      # this machine as one raylet
    (16, 16, (3, 4)),    # one 16-core machine: 12 cores encode, 4 decode
    (128, 16, (25, 4)),  # 8 nodes x 16 cores: 100 cores encode, 28 decode
    (64, 2, (25, 2)),    # 32 small nodes: 2-thread actors, one per node, fit
])
def test_cpu_clusters_give_most_cores_to_the_encoder(cpus, node_cpus, want):
    options = JobOptions()
    actors, threads = options.resolved_encoders(0, cpus, node_cpus)
    assert (actors, threads) == want
    decode = options.resolved_decode_workers(cpus, actors * threads)
    assert decode >= 1 and actors * threads + decode <= cpus  # never more CPU asked than the cluster has
    assert actors * threads <= max(threads, cpus * ENCODE_SHARE) and threads <= ACTOR_THREADS


def test_gpus_get_one_actor_each_and_the_flag_wins():
    assert JobOptions().resolved_encoders(4, 64, 16) == (4, 0)
    assert JobOptions(encode_actors=2).resolved_encoders(0, 16, 16) == (2, 4)
    assert JobOptions(encode_actors=3).resolved_encoders(8, 64, 16) == (3, 0)
