"""The UIFace step loop: DDIM (eta 0) with the two stages, adaptive t0 and attention injection.

Each step makes ONE UNet call whose rows are the c_e passes of the samples that need one,
followed by the conditional passes of the samples in stage 2; samples in stage 1 cost one
evaluation, samples in stage 2 two.  With ``switch="same_step"`` the samples whose d_t settles
at a step get their conditional pass of that step in one more call (conditional rows only,
reading the c_e attention the first call kept).  For ``uiface`` an image costs
S + (steps with t <= t0) UNet sample-evaluations (t < t0 with ``next_step``), not 2S.  Latents stay float32 between steps; the UNet runs in its
own dtype.  Every sample draws its initial noise from its own generator, and nothing in this
loop reduces over the batch, so an image does not depend on its batch-mates.

The UNet is either diffusers' ``UNet2DConditionModel`` or the release's architecture
(``uiface_ray.release.unet.OfficialUNet``); the loop needs of it only ``config.in_channels``,
``out_channels``, ``cross_attention_dim``, ``dtype``, ``attn_processors``/``set_attn_processor`` over
diffusers ``Attention`` layers, and ``unet(x, t, encoder_hidden_states=..., return_dict=False)``.
Three details of the official release's sampler are options (``SamplerConfig.official()``): its
DDIM alpha_bar_prev (``ddim.py``), the plain conditional eps between an adaptive switch and max_t0
(``two_stage.step_config``) and the d_t curve from the conditional pass (``follows_boundary``).

This is the one DDIM loop of the package; other callers pick what it does per step through the
config and ``guided_from``: the training grid is ``mode="baseline", guidance_scale=0`` (the plain
conditional eps, one pass per step), the Figure 2 interval study ``mode="two_stage_fixed"`` with
``t0`` = the interval's end and ``guided_from`` = its start (c_e outside the interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from uiface_ray.sample.adaptive_t0 import combine_maps, map_distance, settle
from uiface_ray.sample.attention import AttentionPlan, UIFaceAttnProcessor
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.sample.ddim import ddim_step
from uiface_ray.sample.two_stage import follows_boundary, guide, in_stage_two, initial_t0, needs_empty_pass, step_config

__all__ = ["SamplerOutput", "run_sampler", "initial_noise", "check_inputs", "check_guided_from"]


@dataclass
class SamplerOutput:
    """Result of :func:`run_sampler` for a batch of B images over S steps (with ``guided_from``,
    stage 2 ran at guided_from <= t < t0)."""

    latents: torch.Tensor  # (B, C, H, W) z_0, float32 (float64 for a float64 UNet)
    t0: torch.Tensor  # (B,) int64: stage 2 ran at t < t0 (and at t0 itself for a same-step adaptive switch)
    d_t: torch.Tensor  # (B, S) float32: eq. 5 distance at each step, NaN where not computed
    timesteps: torch.Tensor  # (S,) int64, the DDIM timesteps in sampling order
    unet_evaluations: torch.Tensor  # (B,) int64 UNet sample-evaluations per image
    unet_calls: int  # batched UNet forward calls made


def check_inputs(
    unet: UNet2DConditionModel,
    context_tokens: torch.Tensor,
    empty_tokens: torch.Tensor,
    generators: list[torch.Generator],
    cfg: SamplerConfig,
    latent_shape: tuple[int, int, int],
) -> None:
    """Raise ValueError/TypeError naming the bad argument; runs before any UNet call."""
    if not isinstance(cfg, SamplerConfig):
        raise TypeError(f"cfg must be a SamplerConfig, got {type(cfg).__name__}")
    dim = unet.config.cross_attention_dim
    if context_tokens.ndim != 3 or context_tokens.shape[-1] != dim:
        raise ValueError(f"context_tokens must be (B, N, {dim}) for this UNet, got {tuple(context_tokens.shape)}")
    if empty_tokens.shape != context_tokens.shape:
        raise ValueError(
            f"empty_tokens {tuple(empty_tokens.shape)} must match context_tokens {tuple(context_tokens.shape)}"
        )
    if context_tokens.shape[0] == 0:
        raise ValueError("context_tokens is an empty batch")
    for name, tokens in (("context_tokens", context_tokens), ("empty_tokens", empty_tokens)):
        if not torch.isfinite(tokens).all():
            bad = (~torch.isfinite(tokens)).flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"{name} has NaN/inf values in rows {bad}")
    if len(generators) != context_tokens.shape[0] or not all(isinstance(g, torch.Generator) for g in generators):
        raise ValueError(
            f"need one torch.Generator per context row: {len(generators)} generators for {context_tokens.shape[0]} rows"
        )
    channels = unet.config.in_channels
    if len(latent_shape) != 3 or latent_shape[0] != channels:
        raise ValueError(f"latent_shape must be ({channels}, H, W) for this UNet, got {tuple(latent_shape)}")
    if unet.config.out_channels != channels:
        raise ValueError(f"UNet predicts {unet.config.out_channels} channels for {channels} inputs; expected eps only")


def check_guided_from(guided_from: int, cfg: SamplerConfig) -> None:
    """Raise ValueError unless ``guided_from`` is a non-negative int, and 0 for the adaptive modes."""
    if isinstance(guided_from, bool) or not isinstance(guided_from, int) or guided_from < 0:
        raise ValueError(f"guided_from must be a non-negative int, got {guided_from!r}")
    if guided_from and cfg.adaptive:
        raise ValueError(f"guided_from={guided_from} needs a fixed stage boundary; mode {cfg.mode!r} is adaptive")


def initial_noise(generators: list[torch.Generator], latent_shape: tuple[int, int, int], device) -> torch.Tensor:
    """z_T: (B, C, H, W) float32, row i drawn from generators[i] alone."""
    rows = [torch.randn(latent_shape, generator=g, device=g.device, dtype=torch.float32) for g in generators]
    return torch.stack(rows).to(device)


def _plan_rows(
    stage_two: torch.Tensor,
    record: torch.Tensor,
    follow: torch.Tensor,
    cfg: SamplerConfig,
    *,
    latent_hw,
    can_settle: bool,
) -> tuple:
    """Which samples go in this call as c_e rows and as conditional rows, and the processors' plan.

    ``record``: stage-1 samples whose c_e maps eq. 5 needs; ``follow``: switched samples whose d_t
    curve goes on from their conditional row (``boundary_map="conditional_pass"``), recorded after them.
    """
    empty_idx = needs_empty_pass(stage_two, cfg).nonzero().flatten()  # samples with a c_e row
    cond_idx = stage_two.nonzero().flatten()  # samples with a conditional row
    row_of = torch.full_like(stage_two, -1, dtype=torch.long)
    row_of[empty_idx] = torch.arange(len(empty_idx), device=stage_two.device)  # sample -> its c_e row
    cond_row = torch.full_like(stage_two, -1, dtype=torch.long)
    cond_row[cond_idx] = torch.arange(len(cond_idx), device=stage_two.device) + len(empty_idx)  # -> its cond row
    plan = AttentionPlan(num_empty=len(empty_idx), latent_hw=latent_hw, blend=cfg.injection_blend)
    if record.any() or follow.any():
        plan.record = torch.cat([row_of[record.nonzero().flatten()], cond_row[follow.nonzero().flatten()]])
    if cfg.injection:
        plan.inject_self, plan.inject_cross = cfg.inject_self, cfg.inject_cross
        if len(cond_idx):
            plan.source = row_of[cond_idx]
            assert bool((plan.source >= 0).all()), "injection needs the c_e row of every stage-2 sample"
        if cfg.switch == "same_step" and record.any() and can_settle:
            plan.keep = row_of[record.nonzero().flatten()]  # any sample still in stage 1 may switch at this step
    return empty_idx, cond_idx, row_of, plan


def _same_step_plan(main: AttentionPlan, settled: torch.Tensor, cfg: SamplerConfig, latent_hw) -> AttentionPlan:
    """Plan of the conditional-only call for the samples that settled in ``main``'s step."""
    plan = AttentionPlan(num_empty=0, latent_hw=latent_hw, blend=cfg.injection_blend)
    if cfg.injection:
        plan.source = settled.nonzero().flatten()  # their rows among main.keep (= main.record)
        plan.kept, plan.inject_self, plan.inject_cross = main.kept, cfg.inject_self, cfg.inject_cross
    return plan


@dataclass
class _Trace:
    """What the loop keeps of each sample besides its latent (eq. 4-5), and what the sampling cost."""

    t0: torch.Tensor  # (B,) int64: stage 2 at t < t0
    d_t: torch.Tensor  # (B, S) float32: eq. 5 distance at each step, NaN where not computed
    prev_map: torch.Tensor  # (B, h, w) float32: h_(t+1) of each sample
    evaluations: torch.Tensor  # (B,) int64 UNet sample-evaluations
    calls: int = 0  # batched UNet calls

    @classmethod
    def start(cls, cfg: SamplerConfig, scheduler: DDIMScheduler, batch: int, latent_hw, device) -> "_Trace":
        """Before the first step: t0 of the mode, no d_t yet, zero maps, nothing evaluated."""
        map_hw = latent_hw if cfg.map_resolution is None else (cfg.map_resolution, cfg.map_resolution)
        return cls(
            t0=initial_t0(cfg, batch, scheduler.config.num_train_timesteps, device),
            d_t=torch.full((batch, len(scheduler.timesteps)), float("nan"), device=device),
            prev_map=torch.zeros((batch, *map_hw), device=device),
            evaluations=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def count(self, *samples: torch.Tensor) -> None:
        """One more UNet call, with one evaluation for each sample of each index tensor in ``samples``."""
        self.calls += 1
        for idx in samples:
            self.evaluations[idx] += 1

    def output(self, latents: torch.Tensor, timesteps: torch.Tensor) -> SamplerOutput:
        return SamplerOutput(
            latents=latents,
            t0=self.t0,
            d_t=self.d_t,
            timesteps=timesteps.long(),
            unet_evaluations=self.evaluations,
            unet_calls=self.calls,
        )


def _boundary(plan: AttentionPlan, rows, switchable: int, step: int, t, trace: _Trace, cfg: SamplerConfig):
    """Eq. 5 for the samples ``rows`` (the first ``switchable`` in stage 1): fills the trace's d_t,
    prev_map and t0; returns the settled mask over those first rows."""
    h_t = combine_maps(plan.maps, tuple(trace.prev_map.shape[1:]), cfg.layer_max_normalise)
    settled = torch.zeros(switchable, dtype=torch.bool, device=rows.device)
    if step > 0:
        distance = map_distance(h_t, trace.prev_map[rows])  # (R,)
        trace.d_t[rows, step] = distance
        trace.t0, settled = settle(trace.t0, rows[:switchable], distance[:switchable], t, cfg.threshold)
    trace.prev_map[rows] = h_t
    return settled


class _Denoiser:
    """The UNet with the UIFace attention processor installed while the loop runs (its own processors
    back on exit): one batched call per plan."""

    def __init__(self, unet: UNet2DConditionModel, state_dtype: torch.dtype) -> None:
        self.unet, self.state_dtype, self.processor = unet, state_dtype, UIFaceAttnProcessor()

    def __enter__(self) -> "_Denoiser":
        self.original = self.unet.attn_processors
        self.unet.set_attn_processor(self.processor)
        return self

    def __exit__(self, *exc) -> None:
        self.unet.set_attn_processor(self.original)

    def __call__(self, plan: AttentionPlan, latents: torch.Tensor, tokens: torch.Tensor, t) -> torch.Tensor:
        """(R, C, H, W) latents and (R, N, D) tokens under ``plan`` -> (R, C, H, W) eps in the state dtype."""
        self.processor.plan = plan
        dtype = self.unet.dtype
        try:
            out = self.unet(latents.to(dtype), t, encoder_hidden_states=tokens.to(dtype), return_dict=False)[0]
        finally:
            self.processor.plan = None
        return out.to(self.state_dtype)


def run_sampler(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    context_tokens: torch.Tensor,
    empty_tokens: torch.Tensor,
    generators: list[torch.Generator],
    cfg: SamplerConfig,
    latent_shape: tuple[int, int, int],
    guided_from: int = 0,
) -> SamplerOutput:
    """Sample B latents: context_tokens / empty_tokens (B, N, D) on the UNet's device.

    ``guided_from`` (non-adaptive modes): c_e alone also at t < guided_from, so stage 2 is
    [guided_from, t0); 0 is eq. 4.
    """
    check_inputs(unet, context_tokens, empty_tokens, generators=generators, cfg=cfg, latent_shape=latent_shape)
    check_guided_from(guided_from, cfg)
    device, latent_hw = context_tokens.device, tuple(latent_shape[1:])
    state_dtype = torch.float64 if unet.dtype == torch.float64 else torch.float32  # latents between steps
    scheduler.set_timesteps(cfg.num_inference_steps, device=device)
    latents = initial_noise(generators, latent_shape, device).to(state_dtype) * scheduler.init_noise_sigma  # z_T
    trace = _Trace.start(cfg, scheduler, len(generators), latent_hw, device)  # t0, d_t, h_(t+1), evaluations
    with _Denoiser(unet, state_dtype) as denoise, torch.inference_mode():
        for step, t in enumerate(scheduler.timesteps):
            # 1. who is in which stage at t (eq. 4) and who needs its c_e map (eq. 5)
            stage_two = in_stage_two(t, trace.t0, guided_from)
            step_cfg = step_config(cfg, t)  # cfg, or the release's plain conditional early stage 2
            record = ~stage_two if cfg.adaptive else torch.zeros_like(stage_two)
            follow = stage_two if follows_boundary(cfg, t) else torch.zeros_like(stage_two)
            empty_idx, cond_idx, row_of, plan = _plan_rows(
                stage_two, record, follow, step_cfg, latent_hw=latent_hw, can_settle=step > 0
            )
            # 2. one UNet call: c_e rows, then conditional rows
            rows_in = torch.cat([latents[empty_idx], latents[cond_idx]])  # (R, C, H, W)
            noise_pred = denoise(plan, rows_in, torch.cat([empty_tokens[empty_idx], context_tokens[cond_idx]]), t)
            trace.count(empty_idx, cond_idx)
            # 3. eps per sample: c_e in stage 1, guided in stage 2 (eq. 4)
            n = len(empty_idx)
            eps = torch.empty_like(latents)
            eps[empty_idx] = noise_pred[:n]
            eps_empty = noise_pred[:n][row_of[cond_idx]] if step_cfg.guidance_scale != 0.0 else None
            eps[cond_idx] = guide(eps_empty, noise_pred[n:], step_cfg.guidance_scale)
            # 4. adaptive boundary (eq. 5) from this step's c_e cross-attention maps
            if plan.record is not None:
                stage_one = record.nonzero().flatten()
                rows = torch.cat([stage_one, follow.nonzero().flatten()])
                settled = _boundary(plan, rows, len(stage_one), step=step, t=t, trace=trace, cfg=cfg)
                # 4b. same-step switch: the settled samples' conditional pass at this t
                if cfg.switch == "same_step" and settled.any():
                    switched = stage_one[settled]
                    catch_up = _same_step_plan(plan, settled, step_cfg, latent_hw)
                    eps_cond = denoise(catch_up, latents[switched], context_tokens[switched], t)
                    trace.count(switched)
                    eps[switched] = guide(eps[switched], eps_cond, step_cfg.guidance_scale)
            # 5. DDIM update, eta 0 (diffusers' or the release's alpha_bar_prev)
            latents = ddim_step(scheduler, eps, t, latents, cfg.ddim_alpha_prev)
    return trace.output(latents, scheduler.timesteps)
