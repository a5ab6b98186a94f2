"""Greedy identity filtering (paper section 3.5, after Kim et al. 2023), computed in blocks.

Candidates arrive in a fixed order (the order of their seeds).  A candidate is kept when

1. its cosine similarity to every identity kept so far is under ``similarity_threshold``
   (inter-class discrepancy), and
2. its cosine similarity to every identity of the generator's training set is under
   ``leakage_threshold`` (no copy of a real person),

until ``num_identities`` are kept.  Similarities are computed as matrix products of one block
of candidates against chunks of the kept set and of the training set, so memory stays at
``block_size x chunk_size`` floats whatever the number of candidates (100k+ is fine).  Inside a
block the greedy order is kept exactly: a candidate is also compared with the candidates of
its own block that were accepted before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FilterSummary", "GreedyIdentityFilter", "max_similarity", "nearest_neighbour_similarity"]


@dataclass
class FilterSummary:
    """What the filter saw: candidates drawn and why each rejected one was dropped."""

    candidates_drawn: int
    kept: int
    rejected_similar: int
    rejected_leakage: int
    requested: int
    similarity_threshold: float
    leakage_threshold: float | None
    training_identities: int


@dataclass
class FilterResult:
    """The kept identities in acceptance order, with their seeds and nearest-neighbour similarity."""

    embeddings: np.ndarray  # (N, E) float32, L2-normalised
    seeds: np.ndarray  # (N,) int64, the seed each identity's face came from
    nn_similarity: np.ndarray  # (N,) float32, max cosine similarity to another kept identity
    summary: FilterSummary = field(repr=False)


def _normalise(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{what} must have shape (N, E), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} holds an all-zero embedding")
    return x / norms


def max_similarity(queries: np.ndarray, bank: np.ndarray, chunk_size: int = 4096) -> np.ndarray:
    """Max cosine similarity of each query row to any row of ``bank``, chunk by chunk.

    Both inputs are L2-normalised ``(Q, E)`` and ``(M, E)``; returns ``(Q,)`` (``-inf`` when the
    bank is empty).
    """
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    for start in range(0, len(bank), chunk_size):
        sims = queries @ bank[start : start + chunk_size].T  # (Q, chunk)
        np.maximum(best, sims.max(axis=1), out=best)
    return best


def nearest_neighbour_similarity(embeddings: np.ndarray, block_size: int = 2048) -> np.ndarray:
    """For each row, the max cosine similarity to any *other* row, computed block by block."""
    n = len(embeddings)
    out = np.full(n, -np.inf, dtype=np.float32)
    for start in range(0, n, block_size):
        block = embeddings[start : start + block_size]
        for other in range(0, n, block_size):
            sims = block @ embeddings[other : other + block_size].T  # (block, block)
            if other == start:
                np.fill_diagonal(sims, -np.inf)
            np.maximum(out[start : start + len(block)], sims.max(axis=1), out=out[start : start + len(block)])
    return out


class GreedyIdentityFilter:
    """Incremental greedy filter: feed candidate blocks with :meth:`offer` until :attr:`done`."""

    def __init__(
        self,
        num_identities: int,
        dim: int,
        similarity_threshold: float,
        training_embeddings: np.ndarray | None = None,
        leakage_threshold: float | None = None,
        chunk_size: int = 4096,
    ):
        if num_identities < 1:
            raise ValueError(f"num_identities must be >= 1, got {num_identities}")
        self.num_identities = num_identities
        self.dim = dim
        self.similarity_threshold = float(similarity_threshold)
        self.leakage_threshold = None if leakage_threshold is None else float(leakage_threshold)
        self.chunk_size = chunk_size
        self._training = None
        if training_embeddings is not None and len(training_embeddings):
            self._training = _normalise(training_embeddings, "training-set embeddings")
            if self._training.shape[1] != dim:
                raise ValueError(f"training-set embeddings have dim {self._training.shape[1]}, expected {dim}")
            if self.leakage_threshold is None:
                raise ValueError("training-set embeddings were given without a leakage_threshold")
        self._kept = np.zeros((num_identities, dim), dtype=np.float32)
        self._seeds = np.zeros(num_identities, dtype=np.int64)
        self._count = 0
        self.drawn = 0
        self.rejected_similar = 0
        self.rejected_leakage = 0

    @property
    def done(self) -> bool:
        return self._count >= self.num_identities

    @property
    def kept(self) -> int:
        return self._count

    def offer(self, embeddings: np.ndarray, seeds: np.ndarray) -> int:
        """Consider one block of candidates in order; returns how many were kept.

        Candidates after the point where the requested count is reached are not counted as drawn.
        """
        emb = _normalise(embeddings, "candidate embeddings")
        seeds = np.asarray(seeds, dtype=np.int64)
        if emb.shape[1] != self.dim:
            raise ValueError(f"candidate embeddings have dim {emb.shape[1]}, expected {self.dim}")
        if len(seeds) != len(emb):
            raise ValueError(f"{len(seeds)} seeds for {len(emb)} candidate embeddings")
        # 1. against the kept set and the training set, block-wise
        to_kept = max_similarity(emb, self._kept[: self._count], self.chunk_size)
        leak_ok = np.ones(len(emb), dtype=bool)
        if self._training is not None:
            leak_ok = max_similarity(emb, self._training, self.chunk_size) < self.leakage_threshold
        within = emb @ emb.T  # (block, block): greedy order inside the block
        accepted_here: list[int] = []
        before = self._count
        for i in range(len(emb)):
            if self.done:
                break
            self.drawn += 1
            if not leak_ok[i]:
                self.rejected_leakage += 1
                continue
            sim = to_kept[i]
            if accepted_here:
                sim = max(sim, within[i, accepted_here].max())
            if sim >= self.similarity_threshold:
                self.rejected_similar += 1
                continue
            accepted_here.append(i)
            self._kept[self._count] = emb[i]
            self._seeds[self._count] = seeds[i]
            self._count += 1
        return self._count - before

    def result(self) -> FilterResult:
        kept = self._kept[: self._count].copy()
        return FilterResult(
            embeddings=kept,
            seeds=self._seeds[: self._count].copy(),
            nn_similarity=nearest_neighbour_similarity(kept, self.chunk_size),
            summary=FilterSummary(
                candidates_drawn=self.drawn,
                kept=self._count,
                rejected_similar=self.rejected_similar,
                rejected_leakage=self.rejected_leakage,
                requested=self.num_identities,
                similarity_threshold=self.similarity_threshold,
                leakage_threshold=self.leakage_threshold,
                training_identities=0 if self._training is None else len(self._training),
            ),
        )
