"""The training objective of the paper (section 3.1, eq. 3), one step at a time.

Key from code names to the paper's symbols:
    x0          -> z = E(x) (latent space) or x (pixel space)
    noise       -> epsilon ~ N(0, I)
    timesteps   -> t ~ U{0, ..., T-1}
    embeddings  -> c, the identity context; rows where ``drop`` is True use c_e instead
    noisy       -> z_t = sqrt(abar_t) z + sqrt(1 - abar_t) epsilon
    pred        -> epsilon_theta(z_t, t, c)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from uiface_ray.model.context import IdentityContextEncoder
from uiface_ray.train.config import DiffusionConfig

__all__ = ["DiffusionModule", "StepNoise", "apply_flip", "diffusion_loss", "draw_step_noise"]


class DiffusionModule(nn.Module):
    """UNet and context encoder as one module: what DDP wraps, Adam updates and EMA averages."""

    def __init__(self, unet: nn.Module, context_encoder: IdentityContextEncoder) -> None:
        super().__init__()
        self.unet = unet
        self.context_encoder = context_encoder

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, embeddings: torch.Tensor, drop: torch.Tensor
    ) -> torch.Tensor:
        empty = self.context_encoder.empty_context.to(embeddings.dtype).expand_as(embeddings)  # (B, E)
        context = torch.where(drop[:, None], empty, embeddings)  # c or c_e per row, (B, E)
        tokens = self.context_encoder(context)  # (B, N, D)
        return self.unet(noisy, timesteps, encoder_hidden_states=tokens).sample


@dataclass
class StepNoise:
    """The random draws of one training step (made on CPU from an explicit generator)."""

    timesteps: torch.Tensor  # (B,) int64
    noise: torch.Tensor  # (B, C, H, W)
    drop: torch.Tensor  # (B,) bool: replace c by c_e
    flip: torch.Tensor  # (B,) bool: horizontal flip of x0

    def to(self, device: torch.device) -> "StepNoise":
        return StepNoise(*(t.to(device) for t in (self.timesteps, self.noise, self.drop, self.flip)))


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
    return StepNoise(timesteps, noise, drop, flip)


def apply_flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the rows of (B, C, H, W) where ``flip`` is True (in pixel space, before encoding)."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


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
    # 2. predict with c, or c_e for the dropped rows
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
