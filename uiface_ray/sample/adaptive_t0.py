"""Adaptive stage boundary t0 (paper eq. 5, official-release form).

    h_t   normalised cross-attention map of the c_e pass at timestep t:
          per layer softmax of the logits over spatial positions, mean over context tokens and
          heads (optionally divided by its maximum), resized to one grid, averaged over layers,
          min-max normalised per sample
    d_t = mean over pixels |h_t - h_(t+1)|      (h_(t+1): the previous, noisier DDIM step)
    t0  = the first timestep with d_t < threshold; stage 2 is then t < t0 (eq. 4), plus t0
          itself with switch="same_step" (the release switches at the next step: next_step)

Eq. 5 writes the L2 norm and ``min{t : d_(t+1) > th and d_t < th}``; the official release takes
the mean absolute difference and the first crossing, which this module follows.  Every function
works per sample, so a sample's h_t and d_t do not depend on the rest of its batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["spatial_map", "layer_grid", "combine_maps", "map_distance", "settle"]


def layer_grid(length: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a layer whose token sequence has ``length`` positions, from the latent's (H, W)."""
    height, width = latent_hw
    factor = 1
    while factor <= max(height, width):
        h, w = math.ceil(height / factor), math.ceil(width / factor)
        if h * w == length:
            return h, w
        factor *= 2
    raise ValueError(f"attention sequence of length {length} is no power-of-two downsampling of {latent_hw}")


def spatial_map(logits: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Per-layer map from cross-attention logits (R, heads, HW, N) -> (R, h, w), float32."""
    probs = logits.float().softmax(dim=2)  # softmax over spatial positions: (R, heads, HW, N)
    spatial = probs.mean(dim=(1, 3))  # mean over heads and context tokens: (R, HW)
    return spatial.reshape(-1, *grid)  # (R, h, w)


def combine_maps(
    layer_maps: list[torch.Tensor], resolution: tuple[int, int], layer_max_normalise: bool = True
) -> torch.Tensor:
    """h_t: layer maps [(R, h_l, w_l)] -> (R, H, W) resized, averaged and min-max normalised per sample."""
    if not layer_maps:
        raise ValueError("no cross-attention maps were recorded: the UNet has no cross-attention layers")
    resized = []
    for m in layer_maps:
        if layer_max_normalise:
            m = m / m.amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)
        m = F.interpolate(m[:, None], size=resolution, mode="bilinear", align_corners=False)  # (R, 1, H, W)
        resized.append(m[:, 0])
    h = torch.stack(resized).mean(dim=0)  # (R, H, W)
    low = h.amin(dim=(1, 2), keepdim=True)
    high = h.amax(dim=(1, 2), keepdim=True)
    return (h - low) / (high - low).clamp_min(torch.finfo(h.dtype).tiny)


def map_distance(h_t: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """d_t = mean over pixels |h_t - h_(t+1)|: (R, H, W) x2 -> (R,)."""
    return (h_t - h_prev).abs().mean(dim=(1, 2))


def settle(
    t0: torch.Tensor, rows: torch.Tensor, d_t: torch.Tensor, t: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(new t0 (B,), mask over ``rows``): samples ``rows`` whose d_t fell under ``threshold`` get t0 = t."""
    settled = d_t < threshold
    t0 = t0.clone()
    t0[rows[settled]] = t.to(t0.dtype)
    return t0, settled
