"""MS-SSIM (Wang, Simoncelli and Bovik, 2003) and intra-class diversity = 1 - MS-SSIM.

Five scales with the standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), a Gaussian
window of size 11 and sigma 1.5, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 255, valid
convolution, 2x2 average pooling between scales, per RGB channel then averaged.  Face images
are small (112 px gives 7 px at the coarsest scale), so at a scale smaller than the window the
window is cut to the largest odd size that fits (sigma unchanged).  Negative contrast-structure
terms are clipped at 0 so the product stays real.  Identical images score exactly 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _window(size: int, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, win.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, win.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel SSIM and contrast-structure at one scale: (B, C) each."""
    size = min(11, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2
    win = _window(size).to(x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _filter(x, win), _filter(y, win)
    sxx = _filter(x * x, win) - mu_x**2
    syy = _filter(y * y, win) - mu_y**2
    sxy = _filter(x * y, win) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).mean((-1, -2)), cs.mean((-1, -2))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM of image a[i] with b[i]; uint8 (B, H, W, 3) each -> (B,) float64."""
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"ms_ssim expects two equal (B, H, W, 3) batches, got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < 2 ** (len(WEIGHTS) - 1) * 3:
        raise ValueError(f"ms_ssim needs images of at least 48 px for {len(WEIGHTS)} scales, got {a.shape[1:3]}")
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).double()  # (B, 3, H, W)
    y = torch.from_numpy(np.ascontiguousarray(b)).permute(0, 3, 1, 2).double()
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    terms = []
    for level in range(len(WEIGHTS)):
        ssim, cs = _ssim_cs(x, y)
        if level == len(WEIGHTS) - 1:
            terms.append(ssim.clamp_min(0))
        else:
            terms.append(cs.clamp_min(0))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(terms, 0)  # (levels, B, C)
    value = torch.prod(stacked ** w.view(-1, 1, 1), dim=0)  # (B, C)
    return value.mean(1).numpy()


@dataclass(frozen=True)
class DiversityResult:
    """Intra-class diversity: 1 - mean MS-SSIM over pairs of images of one identity."""

    diversity: float  # mean over identities
    diversity_std: float
    per_identity: dict  # identity label -> 1 - mean MS-SSIM
    num_identities: int
    num_pairs: int


def intra_pairs(
    labels: np.ndarray, num_identities: int | None, max_pairs_per_identity: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, identity) of image pairs within identities, over a seeded identity sample."""
    labels = np.asarray(labels)
    ids = [c for c in np.unique(labels) if (labels == c).sum() >= 2]
    if not ids:
        raise ValueError("intra-class pairs need an identity with at least 2 images")
    if num_identities is not None and num_identities < len(ids):
        ids = sorted(rng.choice(ids, size=num_identities, replace=False).tolist())
    ia, ib, owner = [], [], []
    for c in ids:
        idx = np.flatnonzero(labels == c)
        ii, jj = np.triu_indices(len(idx), k=1)
        if len(ii) > max_pairs_per_identity:
            pick = np.sort(rng.choice(len(ii), size=max_pairs_per_identity, replace=False))
            ii, jj = ii[pick], jj[pick]
        ia.append(idx[ii]), ib.append(idx[jj]), owner.append(np.full(len(ii), c))
    return np.concatenate(ia), np.concatenate(ib), np.concatenate(owner)


def intra_class_diversity(
    images: np.ndarray,
    labels: np.ndarray,
    num_identities: int | None,
    max_pairs_per_identity: int,
    rng: np.random.Generator,
    batch_size: int = 64,
) -> DiversityResult:
    """1 - MS-SSIM among images of one identity, over a seeded sample of identities."""
    ia, ib, owner = intra_pairs(labels, num_identities, max_pairs_per_identity, rng)
    sims = np.concatenate(
        [ms_ssim(images[ia[s : s + batch_size]], images[ib[s : s + batch_size]]) for s in range(0, len(ia), batch_size)]
    )
    ids = np.unique(owner)
    per = {int(c): float(1.0 - sims[owner == c].mean()) for c in ids}
    vals = np.array(list(per.values()))
    return DiversityResult(float(vals.mean()), float(vals.std()), per, len(ids), len(ia))
