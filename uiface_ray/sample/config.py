"""SamplerConfig: which Table 2 row to sample and the knobs of equations 4-7."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from uiface_ray.config import Config

__all__ = ["MODES", "SamplerConfig"]

#: One mode per row of the paper's Table 2.
MODES = ("baseline", "two_stage_fixed", "two_stage_adaptive", "attention_injection", "uiface")


class SamplerConfig(Config):
    """How one batch of images is sampled (paper sections 3.3-3.4)."""

    mode: Literal["baseline", "two_stage_fixed", "two_stage_adaptive", "attention_injection", "uiface"] = Field(
        "uiface",
        description="baseline: CFG with the identity at every step; two_stage_fixed: c_e for t >= t0, "
        "guided identity below (eq. 4); two_stage_adaptive: t0 per sample (eq. 5); attention_injection: "
        "single stage plus injection (eq. 6-7); uiface: adaptive two-stage plus injection.",
    )
    num_inference_steps: int = Field(50, ge=1, le=1000, description="DDIM steps (eta 0) over the T training timesteps.")
    guidance_scale: float = Field(1.0, ge=0.0, description="w of eq. 4: (w+1)*eps(c) - w*eps(c_e) in stage 2.")
    t0: int = Field(
        500, ge=0, description="two_stage_fixed: stage 1 (c_e only) for t >= t0, stage 2 (guided) for t < t0."
    )
    threshold: float = Field(
        0.005, gt=0.0, description="Adaptive t0 (eq. 5): switch once d_t = mean|h_t - h_(t+1)| falls under this "
        "(paper 0.005, official release 0.006).",
    )
    max_t0: int = Field(
        400, ge=0, description="Adaptive modes: every sample is in stage 2 for t < max_t0 whatever d_t says "
        "(official release: 400, some configs 500; 0 disables the forced switch).",
    )
    switch: Literal["same_step", "next_step"] = Field(
        "same_step", description="Adaptive modes: same_step (as the official release) guides the step at which "
        "d_t first falls under threshold, in a second, conditional-only UNet call of that step; next_step starts "
        "stage 2 one step later, so every step stays one call (eq. 4 read with t0 in the first case).",
    )
    map_resolution: int | None = Field(
        None, ge=1, le=4096, description="Side of the common grid the per-layer cross-attention maps are resized to "
        "(None: the latent's own size; the release uses 32 on 32x32 latents).",
    )
    layer_max_normalise: bool = Field(
        True, description="Divide each layer's cross-attention map by its maximum before averaging over "
        "layers (as the official release does); the average is min-max normalised per sample either way.",
    )
    inject_self: bool = Field(
        True, description="Injection modes: the conditional pass uses the c_e pass's self-attention "
        "probabilities of the same sample and step (sec. 3.4).",
    )
    inject_cross: bool = Field(
        True, description="Injection modes: the conditional pass's cross-attention logits are standardised per "
        "query over the context tokens and rescaled to the blended statistics (eq. 6-7).",
    )
    injection_blend: float = Field(
        1.0, ge=0.0, le=1.0, description="Target statistics = blend*(c_e's) + (1-blend)*(own); 1.0 is eq. 7, "
        "the official release uses 0.5; 0.0 leaves cross-attention unchanged.",
    )

    # ----------------------------------------------------------------------------------------
    # What each mode switches on

    @property
    def adaptive(self) -> bool:
        """True when t0 is chosen per sample from the c_e cross-attention maps (eq. 5)."""
        return self.mode in ("two_stage_adaptive", "uiface")

    @property
    def injection(self) -> bool:
        """True when the conditional pass reads the c_e pass's attention (sec. 3.4)."""
        return self.mode in ("attention_injection", "uiface") and (self.inject_self or self.inject_cross)

    @property
    def single_stage(self) -> bool:
        """True when every step is guided (no c_e-only first stage)."""
        return self.mode in ("baseline", "attention_injection")
