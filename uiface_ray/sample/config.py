"""SamplerConfig: which Table 2 row to sample and the knobs of equations 4-7."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from uiface_ray.config import Config

__all__ = ["MAX_GUIDANCE_SCALE", "MODES", "SamplerConfig", "SamplerMode"]

#: Largest guidance_scale accepted (1e30 or inf gave NaN latents and all-black images).
MAX_GUIDANCE_SCALE = 100.0

#: A sampler mode: one per row of the paper's Table 2 (the type of every field and check that names one).
SamplerMode = Literal["baseline", "two_stage_fixed", "two_stage_adaptive", "attention_injection", "uiface"]

#: Every mode, in Table 2's order.
MODES: tuple[SamplerMode, ...] = get_args(SamplerMode)

_ADAPTIVE: tuple[SamplerMode, ...] = ("two_stage_adaptive", "uiface")  # t0 per sample (eq. 5)
_INJECTION: tuple[SamplerMode, ...] = ("attention_injection", "uiface")  # attention injection (sec. 3.4)
_SINGLE_STAGE: tuple[SamplerMode, ...] = ("baseline", "attention_injection")  # guided at every step


class SamplerConfig(Config):
    """How one batch of images is sampled (paper sections 3.3-3.4)."""

    mode: SamplerMode = Field(
        "uiface",
        description="baseline: CFG with the identity at every step; two_stage_fixed: c_e for t >= t0, "
        "guided identity below (eq. 4); two_stage_adaptive: t0 per sample (eq. 5); attention_injection: "
        "single stage plus injection (eq. 6-7); uiface: adaptive two-stage plus injection.",
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="DDIM steps (eta 0) over the T training timesteps.")
    guidance_scale: float = Field(
        1.0,
        ge=0.0,
        le=MAX_GUIDANCE_SCALE,
        description="w of eq. 4: (w+1)*eps(c) - w*eps(c_e) in stage 2 (at most 100: the paper uses 1, "
        "classifier-free guidance rarely goes past 20, and far above that the guided eps leaves the model's "
        "range: saturated, then NaN, all-black images).",
    )
    t0: int = Field(
        500, ge=0, description="two_stage_fixed: stage 1 (c_e only) for t >= t0, stage 2 (guided) for t < t0."
    )
    threshold: float = Field(
        0.005,
        gt=0.0,
        le=1.0,
        description="Adaptive t0 (eq. 5): switch once d_t = mean|h_t - h_(t+1)| falls under this "
        "(paper 0.005, official release 0.006; at most 1: the maps are min-max normalised, so d_t <= 1).",
    )
    max_t0: int = Field(
        400,
        ge=0,
        description="Adaptive modes: every sample is in stage 2 for t < max_t0 whatever d_t says "
        "(the official release samples with 500, its configs/sample_ddim_config.yaml step_th, as the official "
        "preset does; its function's default is 400; 0 disables the forced switch).",
    )
    switch: Literal["same_step", "next_step"] = Field(
        "same_step",
        description="Adaptive modes: same_step guides the step at which d_t first falls under "
        "threshold, in a second, conditional-only UNet call of that step; next_step (as the official release, whose "
        "eps of that step is computed before its flag is set) starts stage 2 one step later, so every step stays "
        "one call (eq. 4 read with t0 in the first case).",
    )
    map_resolution: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Side of the common grid the per-layer cross-attention maps are resized to "
        "(None: the latent's own size; the release uses 32 on 32x32 latents).",
    )
    layer_max_normalise: bool = Field(
        True,
        description="Divide each layer's cross-attention map by its maximum before averaging over "
        "layers (as the official release does); the average is min-max normalised per sample either way.",
    )
    inject_self: bool = Field(
        True,
        description="Injection modes: the conditional pass uses the c_e pass's self-attention "
        "probabilities of the same sample and step (sec. 3.4).",
    )
    inject_cross: bool = Field(
        True,
        description="Injection modes: the conditional pass's cross-attention logits are standardised per "
        "query over the context tokens and rescaled to the blended statistics (eq. 6-7).",
    )
    injection_blend: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Target statistics = blend*(c_e's) + (1-blend)*(own); 1.0 is eq. 7, "
        "the official release uses 0.5; 0.0 leaves cross-attention unchanged.",
    )
    ddim_alpha_prev: Literal["standard", "release"] = Field(
        "standard",
        description="DDIM's alpha_bar of the previous timestep: standard alpha_bar[t_prev]; release: "
        "alpha_bar[t_prev - 1] (1 at t_prev = 0) with the release's float32 alpha_bar = exp(cumsum(log alpha)), "
        "as the official sampler does (one index off).",
    )
    early_switch: Literal["guided", "conditional"] = Field(
        "guided",
        description="Adaptive modes, samples whose d_t settled while t >= max_t0: guided (eq. 4 with "
        "injection as soon as they switch) or conditional (as the official release: the plain conditional eps, "
        "no guidance and no cross-attention re-standardisation, self-attention still from the c_e pass, until t "
        "falls under max_t0).",
    )
    boundary_map: Literal["empty_pass", "conditional_pass"] = Field(
        "empty_pass",
        description="Adaptive modes, which pass's cross-attention gives h_t of a sample that already "
        "switched while t >= max_t0 (only its d_t curve changes): empty_pass (d_t stops at the switch) or "
        "conditional_pass (as the official release, d_t goes on from its conditional pass).",
    )
    output_size: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="Side of the returned images: resized bilinearly (no antialias) from the "
        "model's size before rounding to uint8; None keeps the model's size (the release saves 112 from 128).",
    )

    @classmethod
    def official(cls, **overrides) -> "SamplerConfig":
        """The official release's sampler (``sample_ddim_2stage`` with ``configs/sample_ddim_config.yaml``)."""
        values = dict(
            mode="uiface",
            num_inference_steps=50,
            guidance_scale=1.0,
            threshold=0.006,
            max_t0=500,
            switch="next_step",
            map_resolution=32,
            layer_max_normalise=True,
            injection_blend=0.5,
            ddim_alpha_prev="release",
            early_switch="conditional",
            boundary_map="conditional_pass",
            output_size=112,
        )
        values.update(overrides)
        return cls(**values)

    # ----------------------------------------------------------------------------------------
    # What each mode switches on

    @property
    def adaptive(self) -> bool:
        """True when t0 is chosen per sample from the c_e cross-attention maps (eq. 5)."""
        return self.mode in _ADAPTIVE

    @property
    def injection(self) -> bool:
        """True when the conditional pass reads the c_e pass's attention (sec. 3.4)."""
        return self.mode in _INJECTION and (self.inject_self or self.inject_cross)

    @property
    def single_stage(self) -> bool:
        """True when every step is guided (no c_e-only first stage)."""
        return self.mode in _SINGLE_STAGE
