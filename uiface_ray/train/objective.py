"""The training objective of the paper (section 3.1, eq. 3), one step at a time.

Key from code names to the paper's symbols:
    x0          -> z = E(x) (latent space) or x (pixel space)
    noise       -> epsilon ~ N(0, I)
    timesteps   -> t ~ U{0, ..., T-1}
    embeddings  -> c, the identity context; rows where ``drop`` is True use c_e instead
    keep        -> the release's context dropout (``context_dropout``): an element mask of the
                   projected context, scaled by 1 / (1 - p) as ``nn.Dropout`` (release family only)
    noisy       -> z_t = sqrt(abar_t) z + sqrt(1 - abar_t) epsilon
    pred        -> epsilon_theta(z_t, t, c)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from uiface_ray.model.context import IdentityContextEncoder, ProjectedContextEncoder
from uiface_ray.train.config import DiffusionConfig

__all__ = [
    "DiffusionModule",
    "StepNoise",
    "apply_flip",
    "cached_x0",
    "context_keep",
    "diffusion_loss",
    "draw_step_noise",
]


class DiffusionModule(nn.Module):
    """UNet and context encoder as one module: what DDP wraps, Adam updates and EMA averages."""

    def __init__(self, unet: nn.Module, context_encoder: IdentityContextEncoder | ProjectedContextEncoder) -> None:
        super().__init__()
        self.unet = unet
        self.context_encoder = context_encoder

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        embeddings: torch.Tensor,
        drop: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if isinstance(self.context_encoder, ProjectedContextEncoder):
            tokens = self.release_context(embeddings, drop, keep)  # (B, 1, D)
        else:
            # c_e lives in identity space here and goes through the same encoder as c
            empty = self.context_encoder.empty_context.to(embeddings.dtype).expand_as(embeddings)  # (B, E)
            context = torch.where(drop[:, None], empty, embeddings)  # c or c_e per row, (B, E)
            tokens = self.context_encoder(context)  # (B, N, D)
        return self.unet(noisy, timesteps, encoder_hidden_states=tokens).sample

    def release_context(self, embeddings: torch.Tensor, drop: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """The release's training context: project c, drop elements (``keep``), then put the learnable
        empty context c_e (D-dimensional, after the projection) in the rows of ``drop``."""
        projected = self.context_encoder(embeddings)  # (B, 1, D)
        if keep is not None:
            projected = projected * keep[:, None, :].to(projected.dtype)  # (B, 1, D)
        empty = self.context_encoder.empty_tokens(embeddings.shape[0]).to(projected.dtype)  # (B, 1, D)
        return torch.where(drop[:, None, None], empty, projected)


@dataclass
class StepNoise:
    """The random draws of one training step (made on CPU from an explicit generator)."""

    timesteps: torch.Tensor  # (B,) int64
    noise: torch.Tensor  # (B, C, H, W)
    drop: torch.Tensor  # (B,) bool: replace c by c_e
    flip: torch.Tensor  # (B,) bool: horizontal flip of x0
    # The step's generator after the draws above, for draws only some runs make (context dropout),
    # so the four above are the same with or without them.
    generator: torch.Generator | None = None

    def to(self, device: torch.device) -> "StepNoise":
        moved = (t.to(device) for t in (self.timesteps, self.noise, self.drop, self.flip))
        return StepNoise(*moved, generator=self.generator)


def draw_step_noise(
    shape: tuple[int, ...], num_train_timesteps: int, p_uncond: float, generator: torch.Generator, hflip: bool = True
) -> StepNoise:
    batch = shape[0]
    timesteps = torch.randint(0, num_train_timesteps, (batch,), generator=generator)
    noise = torch.randn(shape, generator=generator)
    drop = torch.rand(batch, generator=generator) < p_uncond
    flip = torch.rand(batch, generator=generator) < 0.5
    if not hflip:
        flip = torch.zeros_like(flip)
    return StepNoise(timesteps, noise, drop, flip, generator)


def context_keep(draws: StepNoise, dim: int, p: float) -> torch.Tensor:
    """(B, dim) float mask of ``nn.Dropout(p)``: 0 with probability p, else 1 / (1 - p); drawn from the
    step's generator, so a resumed run draws the same masks."""
    if draws.generator is None:
        raise ValueError("context dropout needs the step's generator (StepNoise.generator)")
    batch = draws.drop.shape[0]
    kept = torch.rand(batch, dim, generator=draws.generator) >= p
    return kept.float().to(draws.drop.device) / (1.0 - p)


def _context_dim(module: nn.Module) -> int:
    inner = getattr(module, "module", module)  # DDP keeps the DiffusionModule as .module
    return int(inner.context_encoder.cross_attention_dim)


def apply_flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the rows of (B, C, H, W) where ``flip`` is True (in pixel space, before encoding)."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def cached_x0(
    latents: torch.Tensor, draws: StepNoise, kind: str, latent_shape: tuple[int, int, int], scaling_factor: float
) -> torch.Tensor:
    """x0 = scaling_factor * z from the latent cache's rows (``train/latent_cache.py``).

    ``latents`` (B, K, D): the autoencoder's output for each image (k = 0) and its mirror (k = 1, when
    K = 2); the row of the step's flip draw is taken, as the per-step path encodes flip(x).  VQ: D =
    C*h*w pre-quantisation latents.  KL: D = 2*C*h*w, the posterior's mean and log-variance, sampled
    here from the step's generator (so resuming draws the same z)."""
    b = latents.shape[0]
    c, h, w = latent_shape
    flip = draws.flip.to(latents.device) & (latents.shape[1] > 1)
    rows = torch.where(flip[:, None], latents[:, -1], latents[:, 0])  # (B, D)
    if kind == "vq":
        return scaling_factor * rows.reshape(b, c, h, w)  # (B, C, h, w)
    mean, logvar = rows.reshape(b, 2 * c, h, w).chunk(2, dim=1)  # (B, C, h, w) each
    if draws.generator is None:
        raise ValueError("sampling a KL latent needs the step's generator (StepNoise.generator)")
    eps = torch.randn(mean.shape, generator=draws.generator).to(mean.device)
    return scaling_factor * (mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * eps)


def snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights per sample (Hang et al. 2023)."""
    abar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = abar / (1 - abar)
    clipped = torch.clamp(snr, max=gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def diffusion_loss(
    module: nn.Module,
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    embeddings: torch.Tensor,
    draws: StepNoise,
    cfg: DiffusionConfig,
) -> torch.Tensor:
    """Eq. 3: E || epsilon - epsilon_theta(z_t, t, c) ||^2 (or its v / Min-SNR variants)."""
    # 1. noise the clean sample (forward process, eq. 2)
    noisy = scheduler.add_noise(x0, draws.noise, draws.timesteps)
    # 2. predict with c, or c_e for the dropped rows (release family: after its context dropout)
    if cfg.context_dropout > 0:
        keep = context_keep(draws, _context_dim(module), cfg.context_dropout)  # (B, D)
        pred = module(noisy, draws.timesteps, embeddings, draws.drop, keep)
    else:
        pred = module(noisy, draws.timesteps, embeddings, draws.drop)
    # 3. regress the target
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(x0, draws.noise, draws.timesteps)
    else:
        target = draws.noise
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,)
    if cfg.loss_weighting == "min_snr":
        per_sample = per_sample * snr_weights(scheduler, draws.timesteps, cfg.snr_gamma)
    return per_sample.mean()
