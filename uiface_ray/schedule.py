"""The DDPM/DDIM noise schedule as the official release computes it, below both ``model/`` (its
importer writes the release's schedule buffers) and ``sample/`` (the release's DDIM update).

    beta_t        the linear noise schedule, (T,)
    alpha_bar_t   prod_{s <= t} (1 - beta_s), computed as exp(cumsum(log(1 - beta))) in float32
"""

from __future__ import annotations

import torch

__all__ = ["release_alpha_bars"]


def release_alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar as the release computes it: (T,) float32."""
    return torch.cumsum(torch.log(1 - betas.float()), dim=0).exp()
