"""ModelConfig: the generator's architecture and schedule (imports no torch or diffusers, so a job's
--help and config validation stay fast); the builders are in ``unet.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from uiface_ray.config import Config
from uiface_ray.urls import OptionalUrl

__all__ = ["ModelConfig", "ReleaseUNetConfig"]

RELEASE_GROUPS = 32  # the release's GroupNorm groups, everywhere (release.unet.GROUPS)


class ReleaseUNetConfig(Config):
    """Sizes of the release's UNet (``model.unet: release``); defaults: the published 216M model
    (the release's ``configs/model/unet_cond_ca_cpd25_uncond20.yaml``)."""

    base_channels: int = Field(96, ge=2, description="Channels of the first level (the release's initial_channels).")
    channel_multipliers: tuple[int, ...] = Field(
        (1, 2, 2, 2), description="Cumulative channel multipliers per level (level i: base * prod(mult[:i+1]))."
    )
    attention_levels: tuple[bool, ...] = Field(
        (False, True, True, True), description="Attention blocks per level (the release's is_attention)."
    )
    head_channels: int = Field(
        32, ge=1, description="Channels per attention head, also the context tokens per attention block."
    )
    blocks_per_resolution: int = Field(2, ge=1, description="Residual(+attention) blocks per level on the way down.")

    @classmethod
    def tiny(cls) -> "ReleaseUNetConfig":
        """The test size (as ``official_unet_kwargs(tiny=True)``): 32/64 channels, 16 tokens."""
        return cls(
            base_channels=32,
            channel_multipliers=(1, 2),
            attention_levels=(False, True),
            head_channels=16,
            blocks_per_resolution=1,
        )

    def widths(self) -> list[int]:
        out = [self.base_channels]
        for mult in self.channel_multipliers:
            out.append(out[-1] * mult)
        return out


class ModelConfig(Config):
    """The generator: UNet, identity context, noise schedule and space (pixel or latent)."""

    unet: Literal["diffusers", "release"] = Field(
        "diffusers",
        description="UNet family. diffusers: UNet2DConditionModel sized by block_out_channels..norm_num_groups, "
        "with the token context encoder (num_tokens, context_hidden_dim); release: the official release's "
        "architecture sized by `release`, with its projected context (embedding_dim -> cross_attention_dim) and "
        "learnable empty context.",
    )
    release: ReleaseUNetConfig = Field(
        default_factory=ReleaseUNetConfig, description="Sizes of the release UNet (used when unet is release)."
    )

    image_size: int = Field(32, ge=8, description="Side of the square RGB images in pixels.")
    space: Literal["pixel", "latent"] = Field(
        "pixel", description="'pixel': diffuse RGB images; 'latent': diffuse the latents of `autoencoder`."
    )
    autoencoder: OptionalUrl = Field(
        None, description="Local path or s3:// URL of a diffusers VQModel/AutoencoderKL folder (latent space)."
    )
    latent_scaling_factor: float | None = Field(
        None, gt=0, description="Latent scale; empty: the autoencoder config's scaling_factor (1.0 in pixel space)."
    )
    sample_size: int | None = Field(
        None, ge=4, description="UNet input side; empty: image_size, or image_size / autoencoder downscale."
    )
    in_channels: int | None = Field(None, ge=1, description="UNet input channels; empty: 3 or the latent channels.")
    out_channels: int | None = Field(None, ge=1, description="UNet output channels; empty: same as in_channels.")
    block_out_channels: tuple[int, ...] = Field(
        (64, 128, 128), description="Channels per resolution level (diffusers block_out_channels)."
    )
    down_block_types: tuple[str, ...] | None = Field(
        None, description="diffusers down blocks; empty: DownBlock2D at the top level, CrossAttnDownBlock2D below."
    )
    up_block_types: tuple[str, ...] | None = Field(
        None, description="diffusers up blocks; empty: the mirror of down_block_types."
    )
    layers_per_block: int = Field(2, ge=1, description="ResNet layers per block.")
    attention_head_dim: int = Field(32, ge=1, description="Channels per attention head (heads = channels / this).")
    norm_num_groups: int = Field(32, ge=1, description="GroupNorm groups; must divide every block's channels.")
    cross_attention_dim: int = Field(128, ge=1, description="Width D of the context tokens.")
    num_tokens: int = Field(32, ge=1, description="Number N of context tokens per identity.")
    embedding_dim: int = Field(128, ge=1, description="Identity embedding dimension E (128 dlib, 512 iresnet).")
    context_hidden_dim: int = Field(256, ge=1, description="Hidden width of the context encoder.")
    num_train_timesteps: int = Field(1000, ge=2, description="Diffusion steps T.")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        "linear", description="Noise schedule (diffusers beta_schedule); the paper uses linear."
    )
    beta_start: float = Field(1e-4, gt=0, description="First beta of the linear schedules.")
    beta_end: float = Field(0.02, gt=0, description="Last beta of the linear schedules.")
    prediction_type: Literal["epsilon", "v_prediction"] = Field(
        "epsilon", description="What the UNet predicts; the paper's eq. 3 is 'epsilon'."
    )

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.space == "latent" and not self.autoencoder:
            raise ValueError("space='latent' needs an autoencoder path")
        if self.unet == "release":
            self._check_release()
            return self
        for channels in self.block_out_channels:
            if channels % self.attention_head_dim or channels % self.norm_num_groups:
                raise ValueError(
                    f"block_out_channels {self.block_out_channels}: each must be divisible by "
                    f"attention_head_dim={self.attention_head_dim} and norm_num_groups={self.norm_num_groups}"
                )
        n = len(self.block_out_channels)
        for name in ("down_block_types", "up_block_types"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} needs {n} entries (one per block_out_channels), got {len(value)}")
        return self

    def _check_release(self) -> None:
        r = self.release
        if len(r.attention_levels) != len(r.channel_multipliers):
            raise ValueError(
                f"release.attention_levels needs {len(r.channel_multipliers)} entries (one per "
                f"channel_multipliers), got {len(r.attention_levels)}"
            )
        widths = r.widths()
        if any(w % RELEASE_GROUPS or w % r.head_channels for w in widths) or r.base_channels % 2:
            raise ValueError(
                f"release UNet channels {widths}: each must be divisible by {RELEASE_GROUPS} (GroupNorm groups) "
                f"and release.head_channels={r.head_channels}; base_channels even"
            )
        if self.cross_attention_dim % RELEASE_GROUPS:
            raise ValueError(
                f"cross_attention_dim {self.cross_attention_dim} must be divisible by {RELEASE_GROUPS} "
                "with unet=release (its context GroupNorm)"
            )

    @classmethod
    def tiny(cls, **overrides) -> "ModelConfig":
        """A few-hundred-thousand-parameter model at 16x16 pixels for tests (either UNet family)."""
        values = dict(
            image_size=16,
            block_out_channels=(32, 64),
            layers_per_block=1,
            attention_head_dim=8,
            norm_num_groups=8,
            cross_attention_dim=32,
            num_tokens=32,
            embedding_dim=128,
            context_hidden_dim=64,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            release=ReleaseUNetConfig.tiny(),
        )
        values.update(overrides)
        return cls(**values)

    def scheduler_config(self) -> dict:
        """The DDPM/DDIM scheduler config dict saved with the model."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "prediction_type": self.prediction_type,
            # Pixel space: clip the x0 estimate to the image range [-1, 1] (DDPM/guided-diffusion's
            # clip_denoised). Without it, x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) blows up
            # at t near T (sqrt(abar) ~ 0.006 for linear betas) and DDIM diverges early in training.
            "clip_sample": self.space == "pixel",
        }

    def block_types(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        n = len(self.block_out_channels)
        down = self.down_block_types or ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
        up = self.up_block_types or tuple(t.replace("Down", "Up") for t in reversed(down))
        return tuple(down), tuple(up)
