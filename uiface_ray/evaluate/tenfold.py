"""10-fold verification accuracy (the LFW protocol).

Pairs are split into 10 folds; for each fold the threshold on cosine similarity that maximises
accuracy on the other 9 folds is chosen exactly (over every midpoint between sorted training
scores) and accuracy is measured on the held-out fold.  Folds are contiguous blocks within each
class, in file order: for files laid out fold by fold (LFW View 2, insightface ``.bin``) these
are the usual folds, and for a file holding all same-person pairs first (``pairsDevTest.txt``)
each fold still gets a tenth of each class.  Features come from the image and its horizontal
flip: ``normalize(f(x) + f(flip(x)))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class _Encoder(Protocol):
    def embed(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class TenFoldResult:
    accuracy: float  # mean over folds
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]  # cosine-similarity threshold chosen for each fold
    num_pairs: int


def fold_ids(issame: np.ndarray, n_folds: int = 10) -> np.ndarray:
    """Fold index of each pair: contiguous blocks within each class, in order."""
    issame = np.asarray(issame, dtype=bool)
    folds = np.empty(len(issame), dtype=np.int64)
    for cls in (True, False):
        idx = np.flatnonzero(issame == cls)
        if len(idx) < n_folds:
            raise ValueError(
                f"{n_folds}-fold accuracy needs at least {n_folds} "
                f"{'same' if cls else 'different'}-person pairs, got {len(idx)}"
            )
        for k, part in enumerate(np.array_split(idx, n_folds)):
            folds[part] = k
    return folds


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> float:
    """Threshold t maximising accuracy of ``score >= t`` -> same (exact, midpoints)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], issame[order].astype(np.int64)
    n, n_neg = len(s), int((~issame).sum())
    tp = np.concatenate([[0], np.cumsum(y)])  # predicting the top k as same, k = 0..n
    k = np.arange(n + 1)
    correct = tp + (n_neg - (k - tp))
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[:-1] != s[1:]  # a cut must fall between distinct scores
    correct = np.where(valid, correct, -1)
    best = int(np.argmax(correct))
    if best == 0:
        return float(s[0]) + 1e-6
    if best == n:
        return float(s[-1]) - 1e-6
    return float((s[best - 1] + s[best]) / 2)


def ten_fold_accuracy(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10) -> TenFoldResult:
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    if scores.shape != issame.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and issame {issame.shape} must be equal 1-D shapes")
    folds = fold_ids(issame, n_folds)
    accs, ths = [], []
    for k in range(n_folds):
        train, test = folds != k, folds == k
        t = best_threshold(scores[train], issame[train])
        accs.append(float(((scores[test] >= t) == issame[test]).mean()))
        ths.append(t)
    return TenFoldResult(float(np.mean(accs)), float(np.std(accs)), tuple(accs), tuple(ths), len(scores))


def flip_embeddings(encoder: _Encoder, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, D) L2-normalised ``f(x) + f(flip(x))``."""
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        e = encoder.embed(x) + encoder.embed(np.ascontiguousarray(x[:, :, ::-1]))
        out.append(e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12))
    return np.concatenate(out).astype(np.float32)


def pair_scores(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of emb1 with row i of emb2 (rows L2-normalised)."""
    return np.sum(emb1 * emb2, axis=1)
