"""ArcFace: additive angular margin loss (Deng et al., 2019), s = 64, m = 0.5.

Names follow the paper: the class centres ``W`` (``weight``) and the embeddings ``x`` are
L2-normalised, ``cos_theta = x W^T``; the target logit becomes ``cos(theta + m)`` and every logit
is scaled by ``s`` before softmax cross-entropy.  Where ``theta + m`` would pass pi (and the
margin would stop being monotonic), the target logit is ``cos_theta - m sin(m)`` as in
insightface's original implementation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ArcFaceHead(nn.Module):
    """Class centres plus the ArcFace margin; ``forward(embeddings, labels)`` returns the loss."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.5,
                 generator: torch.Generator | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"ArcFace needs at least 2 classes, got num_classes={num_classes}")
        self.s = float(s)
        self.m = float(m)
        weight = torch.empty(num_classes, embedding_dim)
        nn.init.normal_(weight, 0.0, 0.01, generator=generator)
        self.weight = nn.Parameter(weight)  # (C, E)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits with the margin on each row's target class: (B, C)."""
        cos_theta = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))
        cos_theta = cos_theta.clamp(-1.0, 1.0)  # (B, C)
        target = cos_theta.gather(1, labels.view(-1, 1))  # (B, 1)
        sin_theta = torch.sqrt((1.0 - target * target).clamp_min(1e-12))
        cos_theta_m = target * math.cos(self.m) - sin_theta * math.sin(self.m)  # cos(theta + m)
        threshold = math.cos(math.pi - self.m)
        target_m = torch.where(target > threshold, cos_theta_m, target - math.sin(math.pi - self.m) * self.m)
        logits = cos_theta.scatter(1, labels.view(-1, 1), target_m)
        return logits * self.s

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.min() < 0 or labels.max() >= self.weight.shape[0]:
            raise ValueError(f"labels must lie in [0, {self.weight.shape[0]}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return F.cross_entropy(self.logits(embeddings, labels), labels)
