"""Verification while an FR model trains: one pairs file held in memory at the model's input size.

The images a pairs file names are read once (through :func:`uiface_ray.evaluate.verify.pairs_images`),
reduced to the backbone's input side, and scored as the verify job scores an encoder: features
``normalize(f(x) + f(flip(x)))``, cosine similarity per pair, 10-fold accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from uiface_ray.config import StorageConfig
from uiface_ray.data.images import resize_images
from uiface_ray.evaluate.tenfold import TenFoldResult, pair_scores, ten_fold_accuracy


@dataclass(frozen=True)
class CurvePoint:
    step: int
    elapsed_s: float
    accuracy: float  # mean 10-fold accuracy in [0, 1]
    accuracy_std: float


class PairsVerifier:
    """Pairs of images (U, n, n, 3) uint8 with first/second-member rows and same/different labels."""

    def __init__(
        self, images: np.ndarray, ia: np.ndarray, ib: np.ndarray, issame: np.ndarray, name: str, batch_size: int = 256
    ):
        self.images, self.ia, self.ib, self.issame = images, ia, ib, np.asarray(issame, bool)
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def load(
        cls,
        pairs: str,
        images_root: str | None,
        input_size: int,
        max_pairs: int | None = None,
        st: StorageConfig | None = None,
    ) -> "PairsVerifier":
        from uiface_ray.evaluate.config import VerifySetConfig
        from uiface_ray.evaluate.verify import pairs_images

        if not images_root:
            raise ValueError(f"verify_pairs {pairs}: verify_images (the folder of its images) is required")
        spec = VerifySetConfig(
            name=pairs.rstrip("/").rsplit("/", 1)[-1], pairs=pairs, images_root=images_root, max_pairs=max_pairs
        )
        images, ia, ib, issame = pairs_images(spec, st)  # (U, 112, 112, 3)
        small = resize_images(images, input_size)  # (U, n, n, 3), the filter the training faces get
        return cls(small, ia, ib, issame, spec.name)

    @torch.no_grad()
    def embed(self, backbone: nn.Module, device: torch.device | str = "cpu") -> np.ndarray:
        """(U, E) L2-normalised flip-fused features; the backbone is scored in eval mode and left as it was."""
        was_training = backbone.training
        backbone.eval()
        out = []
        try:
            for s in range(0, len(self.images), self.batch_size):
                x = torch.from_numpy(self.images[s : s + self.batch_size]).to(device)
                x = (x.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5  # (b, 3, n, n) in [-1, 1]
                f = backbone(x) + backbone(x.flip(-1))  # (b, E)
                out.append(F.normalize(f.float(), dim=1).cpu().numpy())
        finally:
            backbone.train(was_training)
        return np.concatenate(out)

    def score(self, backbone: nn.Module, device: torch.device | str = "cpu") -> TenFoldResult:
        emb = self.embed(backbone, device)
        return ten_fold_accuracy(pair_scores(emb[self.ia], emb[self.ib]), self.issame)
