"""Margin softmax heads: ArcFace (Deng et al., 2019) and CosFace (Wang et al., 2018).

Names follow the papers: the class centres ``W`` (``weight``) and the embeddings ``x`` are
L2-normalised, ``cos_theta = x W^T``; the target logit gets a margin and every logit is scaled by
``s`` before softmax cross-entropy.

- ArcFace (additive angular margin; UIFace A.1: s = 64, m = 0.5): the target logit becomes
  ``cos(theta + m)``.  Where ``theta + m`` would pass pi (and the margin would stop being
  monotonic), it is ``cos_theta - m sin(m)`` as in insightface's original implementation.
- CosFace (additive cosine margin; s = 32..64, m = 0.35): the target logit becomes ``cos_theta - m``.

The margin ``m`` is an attribute a trainer may change between steps (margin warm-up,
:func:`uiface_ray.fr.schedule.margin_at`); ``m = 0`` is plain normalised softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

HEADS = ("arcface", "cosface")


class MarginHead(nn.Module):
    """Class centres plus a margin on the target logit; ``forward(embeddings, labels)`` returns the loss."""

    def __init__(
        self, embedding_dim: int, num_classes: int, s: float, m: float, generator: torch.Generator | None = None
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a margin softmax head needs at least 2 classes, got num_classes={num_classes}")
        self.s = float(s)
        self.m = float(m)
        weight = torch.empty(num_classes, embedding_dim)
        nn.init.normal_(weight, 0.0, 0.01, generator=generator)
        self.weight = nn.Parameter(weight)  # (C, E)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos_theta of each embedding with each class centre: (B, C)."""
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1)).clamp(-1.0, 1.0)

    def target_logit(self, target: torch.Tensor) -> torch.Tensor:
        """The target class's cos_theta (B, 1) with the margin applied."""
        raise NotImplementedError

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits with the margin on each row's target class: (B, C)."""
        cos_theta = self.cosines(embeddings)  # (B, C)
        target = cos_theta.gather(1, labels.view(-1, 1))  # (B, 1)
        return cos_theta.scatter(1, labels.view(-1, 1), self.target_logit(target)) * self.s

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.min() < 0 or labels.max() >= self.weight.shape[0]:
            raise ValueError(
                f"labels must lie in [0, {self.weight.shape[0]}), got [{int(labels.min())}, {int(labels.max())}]"
            )
        return F.cross_entropy(self.logits(embeddings, labels), labels)


class ArcFaceHead(MarginHead):
    """ArcFace: target logit ``cos(theta + m)``."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        generator: torch.Generator | None = None,
    ):
        super().__init__(embedding_dim, num_classes, s, m, generator)

    def target_logit(self, target: torch.Tensor) -> torch.Tensor:
        sin_theta = torch.sqrt((1.0 - target * target).clamp_min(1e-12))
        cos_theta_m = target * math.cos(self.m) - sin_theta * math.sin(self.m)  # cos(theta + m)
        threshold = math.cos(math.pi - self.m)
        return torch.where(target > threshold, cos_theta_m, target - math.sin(math.pi - self.m) * self.m)


class CosFaceHead(MarginHead):
    """CosFace: target logit ``cos_theta - m``."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        s: float = 32.0,
        m: float = 0.35,
        generator: torch.Generator | None = None,
    ):
        super().__init__(embedding_dim, num_classes, s, m, generator)

    def target_logit(self, target: torch.Tensor) -> torch.Tensor:
        return target - self.m


def build_head(
    kind: str, embedding_dim: int, num_classes: int, s: float, m: float, generator: torch.Generator | None = None
) -> MarginHead:
    """The head named ``kind`` ('arcface' or 'cosface')."""
    if kind == "arcface":
        return ArcFaceHead(embedding_dim, num_classes, s, m, generator)
    if kind == "cosface":
        return CosFaceHead(embedding_dim, num_classes, s, m, generator)
    raise ValueError(f"head must be one of {HEADS}, got {kind!r}")
