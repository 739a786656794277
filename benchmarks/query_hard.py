"""Hard synthetic clip vectors for ANN benchmarks (issue 21), beside query.py's clustered `Mixture`.

Data: unit vectors x = normalise(data_mean * mu + R (s * z) / |s|), z ~ N(0, I), with a decaying
spectrum s_i = i^-alpha in a random rotation R and no clusters: one anisotropic Gaussian, so IVF
partitions cut a continuum rather than separate groups.  Queries: a shifted distribution like text
queries against CLIP image vectors (the modality gap): their mean direction mu_q is only partly
aligned with mu, they have their own anisotropy (another rotation and a flatter spectrum), and
their top-1 cosine to the data is low (about 0.40; `median_top1` says what a given set achieves).

Everything is deterministic by seed and streamed: rows are made in fixed blocks of BLOCK rows, each
from its own seed, so `rows(lo, hi)` gives the same vectors whatever the chunking, and 1M x 512
float32 (2 GB) never has to be held at once.  `exact_topk` computes exact ground truth over such a
stream with numpy (one matrix product per chunk, keeping a running top-k).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

DIM = 512
BLOCK = 1024  # rows per independently seeded block: chunkings agree whatever their size


@dataclass(frozen=True)
class HardSpec:
    """The hard-data distribution.  With the defaults the median top-1 query-to-data cosine of 200
    queries is 0.374 / 0.379 / 0.386 / 0.389 at 2.5k / 5k / 10k / 20k rows, log-linear, so about
    0.40 at 100k and 0.42 at 1M (extrapolated; a run records what its data achieved).  In-distribution
    queries reach 0.76 at 20k."""

    dim: int = DIM
    alpha: float = 0.6  # data spectrum s_i = i^-alpha: the top 20 of 512 directions carry ~69% of the variance
    data_mean: float = 0.8  # |mean| relative to the noise's RMS norm (mean pairwise cosine ~0.4, as CLIP images)
    query_alpha: float = 0.3  # the queries' flatter spectrum
    query_mean: float = 0.8
    query_align: float = 0.53  # cos(mu_q, mu): the modality gap
    query_shared: float = 0.55  # share of a query's noise drawn in the data's rotation (the rest in its own)
    seed: int = 0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rotation(rng, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)  # (D, D) orthogonal, Haar-distributed


def _spectrum(dim: int, alpha: float) -> np.ndarray:
    s = np.arange(1, dim + 1, dtype=np.float64) ** -alpha
    return (s / np.linalg.norm(s)).astype(np.float32)  # (D,) with |s| = 1: E|s*z|^2 = 1


class HardData:
    """Rows and queries of a `HardSpec`, deterministic by seed (see the module docstring)."""

    def __init__(self, spec: HardSpec = HardSpec()):
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        d = spec.dim
        self.mu = _unit(rng.standard_normal(d)).astype(np.float32)  # (D,)
        other = rng.standard_normal(d)
        other = _unit(other - (other @ self.mu) * self.mu)  # (D,) orthogonal to mu
        self.mu_q = (spec.query_align * self.mu + np.sqrt(1 - spec.query_align ** 2) * other).astype(np.float32)
        self.basis = _rotation(rng, d) * _spectrum(d, spec.alpha)  # (D, D): column i = R[:, i] * s_i
        q_spec = _spectrum(d, spec.query_alpha)
        self.q_basis = _rotation(rng, d) * q_spec  # (D, D): the queries' own anisotropy
        self.q_shared = self.basis / _spectrum(d, spec.alpha) * q_spec  # (D, D): the data's rotation, query spectrum

    def top_variance(self, k: int = 20) -> float:
        """Share of the data noise's variance in its top k directions."""
        v = _spectrum(self.spec.dim, self.spec.alpha).astype(np.float64) ** 2
        return float(v[:k].sum() / v.sum())

    def _block(self, b: int) -> np.ndarray:
        rng = np.random.default_rng([self.spec.seed, 1, b])
        z = rng.standard_normal((BLOCK, self.spec.dim), dtype=np.float32)  # (BLOCK, D)
        return _unit(self.spec.data_mean * self.mu + z @ self.basis.T)  # (BLOCK, D)

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Data rows lo..hi-1, (hi - lo, D) float32 unit vectors."""
        first, last = lo // BLOCK, (hi - 1) // BLOCK
        out = np.concatenate([self._block(b) for b in range(first, last + 1)]) if hi > lo else \
            np.zeros((0, self.spec.dim), np.float32)
        return out[lo - first * BLOCK: hi - first * BLOCK]

    def chunks(self, n: int, chunk: int = 100_000) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, (m, D) rows) for rows 0..n-1 in chunks of at most `chunk` rows."""
        for lo in range(0, n, chunk):
            yield lo, self.rows(lo, min(n, lo + chunk))

    def queries(self, n: int, seed: int = 0) -> np.ndarray:
        """Out-of-distribution queries, (n, D) float32 unit vectors (the shifted distribution)."""
        rng = np.random.default_rng([self.spec.seed, 2, seed])
        d, w = self.spec.dim, self.spec.query_shared
        z1 = rng.standard_normal((n, d), dtype=np.float32)  # (n, D)
        z2 = rng.standard_normal((n, d), dtype=np.float32)  # (n, D)
        noise = np.sqrt(w) * z1 @ self.q_shared.T + np.sqrt(1 - w) * z2 @ self.q_basis.T  # (n, D)
        return _unit(self.spec.query_mean * self.mu_q + noise).astype(np.float32)

    def in_distribution_queries(self, n: int, seed: int = 0) -> np.ndarray:
        """Fresh draws from the data distribution itself (never stored rows), (n, D): the easy case."""
        rng = np.random.default_rng([self.spec.seed, 3, seed])
        z = rng.standard_normal((n, self.spec.dim), dtype=np.float32)  # (n, D)
        return _unit(self.spec.data_mean * self.mu + z @ self.basis.T).astype(np.float32)


class TopK:
    """Running exact top-k by dot product (cosine on unit vectors) of fixed queries over a stream of
    row chunks; ties go to the lower row id."""

    def __init__(self, queries: np.ndarray, k: int = 10):
        self.q = np.ascontiguousarray(queries, dtype=np.float32)  # (Q, D)
        self.k = k
        self.scores = np.full((len(self.q), 0), -np.inf, np.float32)  # (Q, <=k) best first
        self.ids = np.zeros((len(self.q), 0), np.int64)  # (Q, <=k)

    def add(self, lo: int, x: np.ndarray) -> None:
        """Rows lo.. of the data, (m, D)."""
        s = self.q @ np.asarray(x, dtype=np.float32).T  # (Q, m)
        k = self.k
        if s.shape[1] > k:
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]  # (Q, k): this chunk's top k, unordered
        else:
            part = np.broadcast_to(np.arange(s.shape[1]), s.shape)
        cand_s = np.concatenate([self.scores, np.take_along_axis(s, part, axis=1)], axis=1)  # (Q, <=2k)
        cand_i = np.concatenate([self.ids, part + lo], axis=1)  # (Q, <=2k)
        order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]  # score descending, then row id
        self.scores = np.take_along_axis(cand_s, order, axis=1)
        self.ids = np.take_along_axis(cand_i, order, axis=1)


def exact_topk(queries: np.ndarray, chunks: Iterable[tuple[int, np.ndarray]], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over a stream of (first row, rows) chunks: (ids (Q, k) int64, scores (Q, k)
    float32), best first."""
    top = TopK(queries, k)
    for lo, x in chunks:
        top.add(lo, x)
    return top.ids, top.scores


def median_top1(queries: np.ndarray, data: HardData, n: int, chunk: int = 100_000) -> float:
    """Median over the queries of the best cosine to any of the first n data rows (exact)."""
    _, scores = exact_topk(queries, data.chunks(n, chunk), k=1)
    return float(np.median(scores[:, 0]))
