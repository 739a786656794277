"""vidclip.learn.metrics against hand-computed similarity matrices (ties and multi-caption included)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidclip.learn.metrics import dual_softmax, evaluate, ranks, retrieval_metrics


def _clip4clip_reference(x: np.ndarray) -> np.ndarray:
    """CLIP4Clip's compute_metrics ranks (0-based), valid when no row has a tie with its diagonal."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, np.newaxis]
    return np.where((sx - d) == 0)[1]


def test_distinct_scores():
    sim = np.array([
        [0.9, 0.1, 0.3],  # gt 0: nothing higher -> rank 1
        [0.8, 0.2, 0.5],  # gt 1: 0.8 and 0.5 higher -> rank 3
        [0.1, 0.7, 0.4],  # gt 2: 0.7 higher -> rank 2
    ])
    m = retrieval_metrics(sim, np.array([0, 1, 2]))
    assert m["R1"] == pytest.approx(100 / 3)
    assert m["R5"] == m["R10"] == 100.0
    assert m["MdR"] == 2.0 and m["MnR"] == 2.0


def test_recall_cutoffs_and_even_median():
    wanted = [1, 2, 6, 11]  # ranks to build
    sim = np.full((4, 12), 0.1)
    gt = np.array([0, 3, 5, 11])
    for q, (rank, target) in enumerate(zip(wanted, gt)):
        sim[q, target] = 0.5
        others = [t for t in range(12) if t != target][: rank - 1]
        sim[q, others] = 0.9  # exactly rank - 1 targets above the ground truth
    m = retrieval_metrics(sim, gt)
    assert (m["R1"], m["R5"], m["R10"]) == (25.0, 50.0, 75.0)
    assert m["MdR"] == 4.0  # median of 1, 2, 6, 11
    assert m["MnR"] == 5.0


def test_ties_count_against_the_query():
    sim = np.array([
        [0.5, 0.5, 0.1, 0.2],  # gt 0 tied with target 1: rank 2
        [0.5, 0.5, 0.1, 0.2],  # gt 1 tied with target 0: rank 2
        [0.3, 0.3, 0.3, 0.3],  # gt 2, everything tied: rank 4
        [0.9, 0.4, 0.4, 0.4],  # gt 3 tied with 1 and 2, below 0: rank 4
    ])
    gt = np.array([0, 1, 2, 3])
    positives = np.eye(4, dtype=bool)
    assert ranks(sim, positives).tolist() == [2, 2, 4, 4]
    m = retrieval_metrics(sim, gt)
    assert m["R1"] == 0.0 and m["MdR"] == 3.0 and m["MnR"] == 3.0
    # CLIP4Clip's formula emits one entry per tied value here (2 + 2 + 4 + 3 for 4 queries): we emit 4
    assert len(_clip4clip_reference(sim)) == 11


@pytest.mark.parametrize("n", [2, 10, 100])
def test_a_constant_model_scores_no_better_than_chance(n):
    """Every video the same vector: every similarity equal.  R@1 must be at most 1/n (here 0)."""
    sim = np.full((n, n), 0.25)
    m = retrieval_metrics(sim, np.arange(n))
    assert m["R1"] <= 100.0 / n
    assert m["MdR"] == n and m["MnR"] == n
    result = evaluate(sim, np.arange(n))
    assert result["t2v"]["R1"] <= 100.0 / n and result["v2t"]["R1"] <= 100.0 / n


def test_rounded_scores_do_not_inflate_recall():
    """Scores rounded to 1 decimal: ties appear; R@1 may only fall relative to the exact scores."""
    rng = np.random.default_rng(3)
    sim = rng.normal(scale=0.1, size=(200, 200)) + np.eye(200) * 0.05
    exact = retrieval_metrics(sim, np.arange(200))["R1"]
    rounded = retrieval_metrics(np.round(sim, 1), np.arange(200))["R1"]
    assert rounded <= exact


def test_other_positives_do_not_push_the_best_one_down():
    sim = np.array([[0.7, 0.7, 0.7, 0.1]])  # targets 0 and 1 are both positives, 2 is a tied negative
    positives = np.array([[True, True, False, False]])
    assert ranks(sim, positives).tolist() == [2]


def test_matches_clip4clip_without_ties():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(50, 50)).astype(np.float32)
    ours = ranks(sim, np.eye(50, dtype=bool))
    assert np.array_equal(ours, _clip4clip_reference(sim) + 1)
    reference = _clip4clip_reference(sim)
    m = retrieval_metrics(sim, np.arange(50))
    assert m["R1"] == pytest.approx(100 * np.mean(reference == 0))
    assert m["R10"] == pytest.approx(100 * np.mean(reference < 10))
    assert m["MdR"] == pytest.approx(np.median(reference) + 1)
    assert m["MnR"] == pytest.approx(np.mean(reference) + 1)


def test_multi_caption_by_hand():
    gt = np.array([0, 0, 1, 2, 2])  # 5 captions of 3 videos
    sim = np.array([
        [0.9, 0.2, 0.1],  # c0 -> v0: rank 1
        [0.3, 0.6, 0.4],  # c1 -> v0: 0.6, 0.4 higher: rank 3
        [0.2, 0.5, 0.7],  # c2 -> v1: 0.7 higher: rank 2
        [0.1, 0.3, 0.8],  # c3 -> v2: rank 1
        [0.4, 0.1, 0.2],  # c4 -> v2: 0.4 higher: rank 2
    ])
    result = evaluate(sim, gt)
    t2v = result["t2v"]
    assert t2v["R1"] == 40.0 and t2v["R5"] == 100.0 and t2v["MdR"] == 2.0 and t2v["MnR"] == pytest.approx(1.8)
    # v2t, each video ranks all 5 captions; its rank is that of its best caption:
    #   v0 column [.9 .3 .2 .1 .4], own c0 (.9): rank 1
    #   v1 column [.2 .6 .5 .3 .1], own c2 (.5): c1 higher: rank 2
    #   v2 column [.1 .4 .7 .8 .2], own c3 (.8), c4 (.2): best .8: rank 1
    v2t = result["v2t"]
    assert v2t["R1"] == pytest.approx(200 / 3) and v2t["MdR"] == 1.0 and v2t["MnR"] == pytest.approx(4 / 3)
    assert set(result["dsl"]) == {"t2v", "v2t"}


def test_multi_caption_v2t_is_best_caption_rank():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 7, size=30)
    gt[:7] = np.arange(7)  # every video has a caption
    sim = rng.normal(size=(30, 7))
    brute = []
    for v in range(7):
        own = np.flatnonzero(gt == v)
        brute.append(min(1 + int(np.sum(sim[:, v] > sim[c, v])) for c in own))
    positives = np.zeros((30, 7), dtype=bool)
    positives[np.arange(30), gt] = True
    assert ranks(sim.T, positives.T).tolist() == brute


def test_one_caption_per_video_directions_coincide_with_transpose():
    rng = np.random.default_rng(2)
    sim = rng.normal(size=(20, 20))
    result = evaluate(sim, np.arange(20))
    assert result["t2v"] == retrieval_metrics(sim, np.arange(20))
    assert result["v2t"] == retrieval_metrics(sim.T, np.arange(20))


def test_dual_softmax_by_hand():
    sim = np.array([[0.9, 0.5], [0.85, 0.7]])
    # column softmax of 100 * sim over the queries
    p00, p10 = 1 / (1 + math.exp(-5)), math.exp(-5) / (1 + math.exp(-5))  # exp(90), exp(85) normalised
    p01, p11 = math.exp(-20) / (1 + math.exp(-20)), 1 / (1 + math.exp(-20))  # exp(50), exp(70): query 1 owns it
    expected = np.array([[0.9 * p00, 0.5 * p01], [0.85 * p10, 0.7 * p11]])
    np.testing.assert_allclose(dual_softmax(sim, temperature=100.0), expected, rtol=1e-12)
    np.testing.assert_allclose(dual_softmax(sim, temperature=0.0), sim / 2)  # uniform prior

    result = evaluate(sim, np.array([0, 1]))
    assert result["t2v"]["R1"] == 50.0  # caption 1 prefers the hub video 0
    assert result["dsl"]["t2v"]["R1"] == 100.0  # ...which caption 0 claims more strongly


def test_refuses_bad_input():
    sim = np.eye(3)
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="gt"):
        retrieval_metrics(sim, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="gt"):
        retrieval_metrics(sim, np.array([0, 1]))
    with pytest.raises(ValueError, match="no caption"):
        evaluate(sim, np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="2-d"):
        retrieval_metrics(np.ones(3), np.array([0]))
