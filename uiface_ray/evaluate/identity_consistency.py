"""Identity consistency: genuine and impostor similarity distributions (UIFace Figure 5).

Genuine: cosine similarity between two images of the same identity (every pair, or a seeded
sample of at most ``max_pairs_per_identity`` per identity).  Impostor: cosine similarity between
images of two different identities (a seeded sample of ``num_impostor`` pairs).  Embeddings come
from an FR encoder and are L2-normalised.  The separation of the two is summarised by the
decidability index d' = |mu_g - mu_i| / sqrt((var_g + var_i) / 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IdentityConsistency:
    genuine: np.ndarray  # (Ng,) cosine similarities
    impostor: np.ndarray  # (Ni,)
    genuine_mean: float
    impostor_mean: float
    d_prime: float
    encoder: str  # the FR encoder (name:fingerprint) whose features these are


def genuine_pairs(labels: np.ndarray, max_pairs_per_identity: int, rng: np.random.Generator) -> np.ndarray:
    """(P, 2) index pairs of images that share a label."""
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        ii, jj = np.triu_indices(len(idx), k=1)
        if len(ii) > max_pairs_per_identity:
            pick = np.sort(rng.choice(len(ii), size=max_pairs_per_identity, replace=False))
            ii, jj = ii[pick], jj[pick]
        out.append(np.stack([idx[ii], idx[jj]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def impostor_pairs(labels: np.ndarray, num_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(P, 2) index pairs with different labels, drawn uniformly at random."""
    if len(np.unique(labels)) < 2:
        raise ValueError("impostor pairs need at least 2 identities")
    a = rng.integers(0, len(labels), size=4 * num_pairs + 16)
    b = rng.integers(0, len(labels), size=4 * num_pairs + 16)
    keep = labels[a] != labels[b]
    pairs = np.stack([a[keep], b[keep]], 1)[:num_pairs]
    while len(pairs) < num_pairs:  # heavily unbalanced label sets: draw more
        pairs = np.concatenate([pairs, impostor_pairs(labels, num_pairs - len(pairs), rng)])
    return pairs


def identity_consistency(
    embeddings: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    max_pairs_per_identity: int = 45,
    num_impostor: int = 10000,
    encoder: str = "unnamed",
) -> IdentityConsistency:
    emb = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if emb.ndim != 2 or len(emb) != len(labels):
        raise ValueError(f"embeddings {emb.shape} and labels {labels.shape} must have one row per image")
    g = genuine_pairs(labels, max_pairs_per_identity, rng)
    if len(g) == 0:
        raise ValueError("identity consistency needs an identity with at least 2 images")
    i = impostor_pairs(labels, num_impostor, rng)
    gs = np.sum(emb[g[:, 0]] * emb[g[:, 1]], axis=1)
    im = np.sum(emb[i[:, 0]] * emb[i[:, 1]], axis=1)
    pooled = np.sqrt((gs.var() + im.var()) / 2)
    d = float(abs(gs.mean() - im.mean()) / pooled) if pooled > 0 else float("inf")
    return IdentityConsistency(
        genuine=gs.astype(np.float32),
        impostor=im.astype(np.float32),
        genuine_mean=float(gs.mean()),
        impostor_mean=float(im.mean()),
        d_prime=d,
        encoder=encoder,
    )
