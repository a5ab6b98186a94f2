"""The DDIM update (eta 0) of the step loop: diffusers' scheduler, or the official release's form.

    a_t     alpha_bar at the current timestep t
    a_prev  alpha_bar at the previous (less noisy) timestep t_prev = t - T / S
    x0      = (z_t - sqrt(1 - a_t) eps) / sqrt(a_t)                       (predicted clean sample)
    z_prev  = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps

``ddim_alpha_prev="standard"`` is diffusers' ``DDIMScheduler.step`` (a_prev = alpha_bar[t_prev],
1 at t_prev < 0).  ``"release"`` is ``diffusion/ddpm.py`` of the official release: alpha_bar
computed as ``exp(cumsum(log(1 - beta)))`` in float32, ``a_prev = alpha_bar[t_prev - 1]`` (1 at
t_prev = 0, one index off), and eps recomputed from x0 before the update, in the release's order
of operations, so that its images can be reproduced bit for bit where the kernels agree.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from uiface_ray.schedule import release_alpha_bars

__all__ = ["ddim_step"]


def _release_step(scheduler: DDIMScheduler, eps: torch.Tensor, t: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    alpha_bars = release_alpha_bars(scheduler.betas)
    step = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    t, t_prev = int(t), int(t) - step
    # 1. alpha_bar at t, and the release's alpha_bar "prev": alpha_bar[t_prev - 1], 1 at t_prev <= 0
    alpha_prod_t = alpha_bars[t]
    alpha_prod_t_prev = alpha_bars[t_prev - 1] if t_prev >= 1 else torch.tensor(1.0)
    alpha_prod_t, alpha_prod_t_prev = alpha_prod_t.to(z_t.device), alpha_prod_t_prev.to(z_t.device)
    beta_prod_t = 1 - alpha_prod_t
    # 2. x0 from eps, then eps back from x0 (the release's order)
    x0 = (z_t - beta_prod_t**0.5 * eps) / alpha_prod_t**0.5
    eps = (z_t - alpha_prod_t**0.5 * x0) / beta_prod_t**0.5
    # 3. z_prev, eta 0
    direction = (1 - alpha_prod_t_prev) ** 0.5 * eps
    return alpha_prod_t_prev**0.5 * x0 + direction


def ddim_step(
    scheduler: DDIMScheduler, eps: torch.Tensor, t: torch.Tensor, z_t: torch.Tensor, alpha_prev: str = "standard"
) -> torch.Tensor:
    """z_(t_prev) from z_t (B, C, H, W) and eps (B, C, H, W), eta 0."""
    if alpha_prev == "release":
        return _release_step(scheduler, eps, t, z_t)
    return scheduler.step(eps, t, z_t, eta=0.0).prev_sample
