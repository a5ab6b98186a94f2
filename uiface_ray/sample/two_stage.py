"""The two-stage schedule and the stage-2 guidance of eq. 4.

    z_(t-1) = DDIM(z_t, eps(z_t, t, c_e))                            if t in [t0, T]   (stage 1)
    z_(t-1) = DDIM(z_t, (w + 1) eps(z_t, t, c) - w eps(z_t, t, c_e))  if t in [0, t0)  (stage 2)

The boundary t0 is a per-sample tensor.  Eq. 4 puts t = t0 in both cases; here the first wins, so
a sample is in stage 2 when ``t < t0`` (which makes ``two_stage_fixed`` with t0 = 0 pure c_e
sampling).  The one exception is the adaptive ``switch="same_step"``: the step whose d_t settles,
t = t0, is guided too; the step loop handles it (the official release switches one step later,
``switch="next_step"``).  ``baseline`` and ``attention_injection`` are single-stage
(t0 = T: every step guided); ``two_stage_fixed`` uses ``cfg.t0``; the adaptive modes start at
``cfg.max_t0`` (the forced switch) and raise a sample's t0 to the timestep where eq. 5 first settles.
The step loop's ``guided_from`` adds a lower end for the non-adaptive modes: c_e again for
t < guided_from, so the identity guides only the interval [guided_from, t0) (the paper's Figure 2).
"""

from __future__ import annotations

import torch

from uiface_ray.sample.config import SamplerConfig

__all__ = ["initial_t0", "in_stage_two", "guide", "needs_empty_pass", "step_config", "follows_boundary"]


def initial_t0(cfg: SamplerConfig, batch: int, num_train_timesteps: int, device: torch.device) -> torch.Tensor:
    """t0 of every sample before sampling starts, (B,) int64."""
    if cfg.single_stage:
        value = num_train_timesteps  # t < T at every step: guided throughout
    elif cfg.adaptive:
        value = cfg.max_t0  # forced switch; eq. 5 may move it up to the step where d_t settles
    else:
        value = cfg.t0
    return torch.full((batch,), value, dtype=torch.long, device=device)


def in_stage_two(t: torch.Tensor, t0: torch.Tensor, guided_from: int = 0) -> torch.Tensor:
    """(B,) bool: which samples are guided by their identity at timestep t (eq. 4, second case).

    ``guided_from`` > 0 keeps c_e below it too: stage 2 is then ``guided_from <= t < t0`` (the
    identity used only inside one interval, Figure 2); 0 is eq. 4 itself.
    """
    return (t < t0) & (t >= guided_from)


def needs_empty_pass(stage_two: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """(B,) bool: which samples need the c_e pass at this step.

    Stage-1 samples always do (it is their only pass); stage-2 samples do for the guidance term
    ``w * eps(c_e)`` and for attention injection, so only ``w = 0`` without injection skips it.
    """
    if cfg.guidance_scale != 0.0 or cfg.injection:
        return torch.ones_like(stage_two)
    return ~stage_two


def guide(eps_empty: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Stage-2 noise prediction of eq. 4: (w + 1) * eps(c) - w * eps(c_e)."""
    if guidance_scale == 0.0:
        return eps_cond
    return (guidance_scale + 1.0) * eps_cond - guidance_scale * eps_empty


def _early(cfg: SamplerConfig, t) -> bool:
    """Adaptive modes at t >= max_t0: every stage-2 sample here switched by eq. 5, not by force."""
    return cfg.adaptive and int(t) >= cfg.max_t0


def step_config(cfg: SamplerConfig, t) -> SamplerConfig:
    """The knobs of eq. 4-7 at timestep t: ``cfg``, except with ``early_switch="conditional"`` (the
    official release) in the early window, where stage 2 is the plain conditional eps: no guidance,
    no cross-attention re-standardisation (self-attention injection stays)."""
    if cfg.early_switch == "conditional" and _early(cfg, t):
        return cfg.model_copy(update={"guidance_scale": 0.0, "inject_cross": False})
    return cfg


def follows_boundary(cfg: SamplerConfig, t) -> bool:
    """Whether switched samples keep a d_t curve at t, from their conditional pass (the release's)."""
    return cfg.boundary_map == "conditional_pass" and _early(cfg, t)
