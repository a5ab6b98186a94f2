"""Improved Precision and Recall (Kynkäänniemi et al., 2019) in a stated feature space.

Each set's manifold is the union of hyperspheres around its feature vectors, the radius of each
being the distance to its k-th nearest neighbour within the same set (itself excluded).
Precision: the fraction of generated samples inside the real manifold.  Recall: the fraction
of real samples inside the generated manifold.  The paper uses k = 10 and Inception features;
here the feature space is whatever encoder produced the features, and results carry its name so
that a number from an FR encoder is never reported as Inception recall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float
    k: int
    feature_space: str  # e.g. "iresnet50:abc123 (FR embedding)"
    num_real: int
    num_generated: int


def knn_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row: (N,)."""
    if len(features) <= k:
        raise ValueError(f"k = {k} needs more than {k} samples in each set, got {len(features)}")
    out = []
    for i in range(0, len(features), chunk):
        d = torch.cdist(features[i : i + chunk], features)  # (chunk, N)
        out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the zero distance to itself
    return torch.cat(out)


def _inside(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each query row: is it within radius of at least one reference row?"""
    out = []
    for i in range(0, len(query), chunk):
        d = torch.cdist(query[i : i + chunk], ref)  # (chunk, M)
        out.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def improved_precision_recall(
    real: np.ndarray, generated: np.ndarray, k: int = 10, feature_space: str = "unnamed"
) -> PrecisionRecall:
    """Improved precision/recall of ``generated`` against ``real``; both (N, D) features."""
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {real.shape} and {generated.shape}")
    r = torch.from_numpy(np.asarray(real, dtype=np.float64))
    g = torch.from_numpy(np.asarray(generated, dtype=np.float64))
    r_radii, g_radii = knn_radii(r, k), knn_radii(g, k)
    precision = float(_inside(g, r, r_radii).double().mean())
    recall = float(_inside(r, g, g_radii).double().mean())
    return PrecisionRecall(
        precision=precision, recall=recall, k=k, feature_space=feature_space, num_real=len(r), num_generated=len(g)
    )
