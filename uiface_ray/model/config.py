"""ModelConfig: the generator's architecture and schedule (imports no torch or diffusers, so a job's
--help and config validation stay fast); the builders are in ``unet.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from uiface_ray.config import Config, StorageConfig
from uiface_ray.urls import OptionalUrl, Url

__all__ = ["ModelConfig", "OfficialImportConfig"]


class ModelConfig(Config):
    """The generator: UNet, identity context, noise schedule and space (pixel or latent)."""

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

    @classmethod
    def tiny(cls, **overrides) -> "ModelConfig":
        """A few-hundred-thousand-parameter model at 16x16 pixels for tests."""
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


class OfficialImportConfig(Config):
    """jobs/import_official.py: the release's files -> one uiface-ray model folder."""

    checkpoint: Url = Field(
        ...,
        description="The release's diffusion checkpoint (model_<step>.ckpt or "
        "ema_averaged_model_<step>.ckpt), local path or s3:// URL.",
    )
    weights: Literal["auto", "ema", "non_ema"] = Field(
        "auto",
        description="Which weights the checkpoint holds; auto: from its name (ema_averaged_model* -> ema, "
        "model* -> non_ema). The release samples from non_ema by default.",
    )
    vq_encoder: Url = Field(..., description="first_stage_encoder_state_dict.pt of the release (path or s3://).")
    vq_decoder: Url = Field(..., description="first_stage_decoder_state_dict.pt of the release (path or s3://).")
    output: Url = Field(..., description="Model folder to write (path or s3://); loadable by load_model.")
    architecture: Literal["release", "tiny"] = Field(
        "release", description="release: the published 216M-parameter UNet; tiny: the test configuration."
    )
    encoder_kind: str = Field("iresnet", description="Identity encoder the model expects (recorded in the bundle).")
    encoder_fingerprint: str = Field("", description="Fingerprint of that encoder's checkpoint, if known.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
