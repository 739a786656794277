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


@pytest.mark.parametrize("cores, gpus, ray, workers", [
    (2, 0, False, 1),    # this machine: in-process, one decode child (Ray measured 2x slower)
    (8, 0, False, 2),    # the largest CPU machine kept in-process: 20% of the cores decode
    (16, 0, True, None),  # more cores than one torch encoder is trusted to use: encoder actors
    (16, 1, False, 15),  # one GPU: decoding is the limit, every other core decodes
    (32, 4, True, None),  # several GPUs: one encoder actor each
])
def test_the_runner_rule(cores, gpus, ray, workers):
    from pipelines.options import choose_runner

    choice = choose_runner(cores, gpus)
    assert (choice.ray, choice.decode_workers) == (ray, workers)
    assert choice.reason.startswith("local Ray" if ray else "in-process")
