"""The identity-conditioned UNet plus its context encoder, in one of two families (``model.unet``):
a diffusers ``UNet2DConditionModel`` with the token context encoder, or the official release's
architecture (:class:`~uiface_ray.release.unet.OfficialUNet`) with its projected context.

``ModelConfig`` describes the whole generator (UNet, context encoder, noise schedule, pixel or
latent space); ``build_model`` turns it into a freshly initialised :class:`UIFaceModel`.
``ModelConfig.tiny()`` is the preset the tests use: 16x16 pixels, two resolution levels of 32/64
channels, one ``CrossAttnDownBlock2D``/``CrossAttnUpBlock2D`` pair and a cross-attention mid
block, so the UNet has both self-attention (``attn1``) and cross-attention (``attn2``) processors.
"""

from __future__ import annotations


import torch
from diffusers import UNet2DConditionModel

from uiface_ray.config import StorageConfig
from uiface_ray.model.config import ModelConfig
from uiface_ray.model.autoencoder import Autoencoder, downscale_factor, latent_channels, load_autoencoder
from uiface_ray.model.bundle import UIFaceModel, default_encoder_info
from uiface_ray.model.context import IdentityContextEncoder, ProjectedContextEncoder
from uiface_ray.release.unet import OfficialUNet, release_init

__all__ = ["ModelConfig", "build_model", "build_release_unet", "build_unet", "unet_shape"]


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


def build_release_unet(cfg: ModelConfig, in_channels: int, sample_size: int) -> OfficialUNet:
    """The release's UNet sized by ``cfg.release``, initialised as the release trains it (:func:`release_init`)."""
    r = cfg.release
    return release_init(
        OfficialUNet(
            in_channels=in_channels,
            out_channels=in_channels,
            sample_size=sample_size,
            base_channels=r.base_channels,
            channel_multipliers=tuple(r.channel_multipliers),
            attention_levels=tuple(r.attention_levels),
            head_channels=r.head_channels,
            blocks_per_resolution=r.blocks_per_resolution,
            cross_attention_dim=cfg.cross_attention_dim,
        )
    )


def build_model(
    cfg: ModelConfig,
    encoder_info: dict | None = None,
    seed: int = 0,
    autoencoder: Autoencoder | None = None,
    storage: StorageConfig | None = None,
) -> UIFaceModel:
    """A freshly initialised generator; weights depend only on ``seed``.

    ``cfg.unet`` picks the family: diffusers' ``UNet2DConditionModel`` with the token context encoder,
    or the release's :class:`OfficialUNet` with its projected context and learnable empty context.
    ``encoder_info`` records the identity encoder the model expects (kind, dim, fingerprint); its
    dim must equal ``cfg.embedding_dim``.  In latent space the autoencoder is loaded from
    ``cfg.autoencoder`` (with ``storage``, the job's resolved storage settings) unless given.
    """
    info_encoder = default_encoder_info(cfg.embedding_dim) if encoder_info is None else dict(encoder_info)
    if int(info_encoder.get("dim", -1)) != cfg.embedding_dim:
        raise ValueError(
            f"identity encoder dim {info_encoder.get('dim')} does not match model.embedding_dim={cfg.embedding_dim}"
        )
    if cfg.space == "latent" and autoencoder is None:
        autoencoder = load_autoencoder(cfg.autoencoder, storage=storage)
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
        if cfg.unet == "release":
            unet = build_release_unet(cfg, channels, size)
            context_encoder = ProjectedContextEncoder(cfg.embedding_dim, cfg.cross_attention_dim)
        else:
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
    return UIFaceModel(
        unet=unet,
        context_encoder=context_encoder,
        scheduler_config=cfg.scheduler_config(),
        autoencoder=autoencoder,
        info=info,
    )
