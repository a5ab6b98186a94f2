"""Training augmentation for FR models: horizontal flip and AdaFace-style augmentation.

AdaFace (Kim et al., 2022) applies, each with its own probability (0.2 in UIFace A.1):
  1. crop:          a random-resized crop (area 20%..100%, aspect 3/4..4/3) scaled back to full
                    size and pasted at its own place on a black canvas, so the face is partly
                    cut off but never moved;
  2. low resolution: downscale by a factor in [0.2, 1] with a random interpolation, then scale back;
  3. photometric:   random brightness, contrast and saturation, each factor in [0.5, 1.5].
Flip is applied with probability 0.5; an optional random shift (by up to ``shift`` of the side,
edge pixels repeated) on every image helps small, low-resolution training sets.  Images are float tensors in [0, 1], (B, 3, H, W); every
random draw comes from the ``torch.Generator`` passed in.  Training draws each row's choices from
its own generator (:func:`row_generator`: seed, epoch, row), so the loaders that decode a batch
augment it too, in any process, and the result does not depend on which one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class AugmentSpec:
    flip_p: float = 0.5
    crop_p: float = 0.2
    low_res_p: float = 0.2
    photometric_p: float = 0.2
    shift: float = 0.0  # largest translation, as a fraction of the side


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def random_crop_in_place(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(3, H, W) -> (3, H, W): keep one random box at its own place, zero the rest."""
    _, h, w = img.shape
    for _ in range(10):
        area = _uniform(0.2, 1.0, g) * h * w
        ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3), g))
        cw = int(round(math.sqrt(area * ratio)))
        ch = int(round(math.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            out = torch.zeros_like(img)
            out[:, top : top + ch, left : left + cw] = img[:, top : top + ch, left : left + cw]
            return out
    return img


def low_resolution(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(3, H, W): down to a factor in [0.2, 1] and back up, random interpolation modes."""
    _, h, w = img.shape
    factor = _uniform(0.2, 1.0, g)
    small = (max(1, int(h * factor)), max(1, int(w * factor)))
    modes = ("nearest", "bilinear", "bicubic", "area")
    down = modes[int(torch.randint(0, 4, (), generator=g))]
    up = modes[int(torch.randint(0, 3, (), generator=g))]  # 'area' does not upsample
    x = F.interpolate(img[None], size=small, mode=down)
    x = F.interpolate(x, size=(h, w), mode=up)
    return x[0].clamp(0.0, 1.0)


def photometric(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(3, H, W): brightness, contrast, saturation factors in [0.5, 1.5], random order."""
    grey_w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(3, 1, 1)
    for k in torch.randperm(3, generator=g).tolist():
        f = _uniform(0.5, 1.5, g)
        if k == 0:
            img = img * f
        elif k == 1:
            mean = (img * grey_w).sum(0).mean()
            img = (img - mean) * f + mean
        else:
            grey = (img * grey_w).sum(0, keepdim=True)
            img = (img - grey) * f + grey
        img = img.clamp(0.0, 1.0)
    return img


def random_shift(img: torch.Tensor, g: torch.Generator, shift: float) -> torch.Tensor:
    """(3, H, W): translate by up to ``shift * side`` pixels in each direction, edges repeated."""
    _, h, w = img.shape
    kh, kw = int(round(shift * h)), int(round(shift * w))
    if kh == 0 and kw == 0:
        return img
    dy = int(torch.randint(-kh, kh + 1, (), generator=g))
    dx = int(torch.randint(-kw, kw + 1, (), generator=g))
    padded = F.pad(img[None], (kw, kw, kh, kh), mode="replicate")[0]  # (3, H + 2kh, W + 2kw)
    return padded[:, kh + dy : kh + dy + h, kw + dx : kw + dx + w]


def augment_image(img: torch.Tensor, g: torch.Generator, spec: AugmentSpec = AugmentSpec()) -> torch.Tensor:
    """Augment one (3, H, W) image in [0, 1], every choice drawn from ``g``."""
    if float(torch.rand((), generator=g)) < spec.flip_p:
        img = img.flip(-1)
    if spec.shift > 0:
        img = random_shift(img, g, spec.shift)
    if float(torch.rand((), generator=g)) < spec.crop_p:
        img = random_crop_in_place(img, g)
    if float(torch.rand((), generator=g)) < spec.low_res_p:
        img = low_resolution(img, g)
    if float(torch.rand((), generator=g)) < spec.photometric_p:
        img = photometric(img, g)
    return img


def augment_batch(images: torch.Tensor, g: torch.Generator, spec: AugmentSpec = AugmentSpec()) -> torch.Tensor:
    """Augment a (B, 3, H, W) batch in [0, 1]; each image draws its own choices from ``g``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"augment_batch expects (B, 3, H, W), got {tuple(images.shape)}")
    return torch.stack([augment_image(img, g, spec) for img in images])


def row_generator(seed: int, epoch: int, row: int) -> torch.Generator:
    """The generator of one row's augmentation in one epoch: the same in any process, batch or worker."""
    state = np.random.SeedSequence([seed, epoch, row, 0xA06]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def augment_rows(images: torch.Tensor, seed: int, epochs, rows, spec: AugmentSpec) -> torch.Tensor:
    """Augment (B, 3, H, W) images in [0, 1], row i with :func:`row_generator` (seed, epochs[i], rows[i])."""
    return torch.stack(
        [augment_image(img, row_generator(seed, int(e), int(r)), spec) for img, e, r in zip(images, epochs, rows)]
    )
