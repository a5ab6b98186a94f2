"""The identity-conditioned UNet: a diffusers ``UNet2DConditionModel`` plus the context encoder.

``ModelConfig`` describes the whole generator (UNet, context encoder, noise schedule, pixel or
latent space); ``build_model`` turns it into a freshly initialised :class:`UIFaceModel`.
``ModelConfig.tiny()`` is the preset the tests use: 16x16 pixels, two resolution levels of 32/64
channels, one ``CrossAttnDownBlock2D``/``CrossAttnUpBlock2D`` pair and a cross-attention mid
block, so the UNet has both self-attention (``attn1``) and cross-attention (``attn2``) processors.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import UNet2DConditionModel
from pydantic import Field, model_validator

from uiface_ray.config import Config
from uiface_ray.model.autoencoder import Autoencoder, downscale_factor, latent_channels, load_autoencoder
from uiface_ray.model.bundle import UIFaceModel, default_encoder_info
from uiface_ray.model.context import IdentityContextEncoder

__all__ = ["ModelConfig", "build_model", "build_unet", "unet_shape"]


class ModelConfig(Config):
    """The generator: UNet, identity context, noise schedule and space (pixel or latent)."""

    image_size: int = Field(32, ge=8, description="Side of the square RGB images in pixels.")
    space: Literal["pixel", "latent"] = Field(
        "pixel", description="'pixel': diffuse RGB images; 'latent': diffuse the latents of `autoencoder`."
    )
    autoencoder: str | None = Field(
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
            image_size=16, block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8,
            norm_num_groups=8, cross_attention_dim=32, num_tokens=32, embedding_dim=128, context_hidden_dim=64,
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
        up = self.up_block_types or tuple(
            t.replace("Down", "Up") for t in reversed(down)
        )
        return tuple(down), tuple(up)


def unet_shape(cfg: ModelConfig, autoencoder: Autoencoder | None) -> tuple[int, int, int]:
    """(channels, sample_size, out_channels) of the UNet for this config and autoencoder."""
    if cfg.space == "latent":
        assert autoencoder is not None
        factor = downscale_factor(autoencoder)
        if cfg.image_size % factor:
            raise ValueError(f"image_size {cfg.image_size} is not divisible by the autoencoder's downscale {factor}")
        channels, size = latent_channels(autoencoder), cfg.image_size // factor
    else:
        channels, size = 3, cfg.image_size
    for name, given, derived in (("in_channels", cfg.in_channels, channels), ("sample_size", cfg.sample_size, size)):
        if given is not None and given != derived:
            raise ValueError(f"model.{name}={given} does not match the {cfg.space} space ({derived})")
    out = cfg.out_channels or channels
    if out != channels:
        raise ValueError(f"model.out_channels={out} must equal the input channels {channels}")
    return channels, size, out


def build_unet(cfg: ModelConfig, in_channels: int, sample_size: int, out_channels: int) -> UNet2DConditionModel:
    down, up = cfg.block_types()
    heads = tuple(c // cfg.attention_head_dim for c in cfg.block_out_channels)
    # diffusers' UNet2DConditionModel reads `attention_head_dim` as the number of heads (its issue 2011).
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=heads,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cfg.cross_attention_dim,
    )


def build_model(cfg: ModelConfig, encoder_info: dict | None = None, seed: int = 0,
                autoencoder: Autoencoder | None = None) -> UIFaceModel:
    """A freshly initialised generator; weights depend only on ``seed``.

    ``encoder_info`` records the identity encoder the model expects (kind, dim, fingerprint); its
    dim must equal ``cfg.embedding_dim``.  In latent space the autoencoder is loaded from
    ``cfg.autoencoder`` unless given.
    """
    info_encoder = default_encoder_info(cfg.embedding_dim) if encoder_info is None else dict(encoder_info)
    if int(info_encoder.get("dim", -1)) != cfg.embedding_dim:
        raise ValueError(
            f"identity encoder dim {info_encoder.get('dim')} does not match model.embedding_dim={cfg.embedding_dim}"
        )
    if cfg.space == "latent" and autoencoder is None:
        autoencoder = load_autoencoder(cfg.autoencoder)
    if cfg.space == "pixel":
        autoencoder = None
    channels, size, out = unet_shape(cfg, autoencoder)
    if cfg.latent_scaling_factor is not None:
        scaling = cfg.latent_scaling_factor
    elif autoencoder is not None:
        scaling = float(autoencoder.config.scaling_factor)
    else:
        scaling = 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = build_unet(cfg, channels, size, out)
        context_encoder = IdentityContextEncoder(
            cfg.embedding_dim, cfg.num_tokens, cfg.cross_attention_dim, cfg.context_hidden_dim
        )
    info = {
        "encoder": info_encoder,
        "image_size": cfg.image_size,
        "space": cfg.space,
        "latent_scaling_factor": scaling,
        "model_config": cfg.model_dump(mode="json"),
    }
    return UIFaceModel(unet=unet, context_encoder=context_encoder, scheduler_config=cfg.scheduler_config(),
                       autoencoder=autoencoder, info=info)
