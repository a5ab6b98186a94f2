"""The released UIFace UNet (Tencent/TFace ``generation/uiface``), rebuilt here as our own module.

The release's layout differs from diffusers' ``UNet2DConditionModel`` where no config reaches:

- time embedding: sinusoid of ``base_channels`` features laid out ``[cos | sin]`` (frequencies
  ``10000^(-k/half)``), then Linear -> SiLU -> Linear to ``4 * base_channels``;
- residual block ("CA" conditioning): GroupNorm -> SiLU -> conv3x3, then an adaptive GroupNorm
  ``(1 + scale) * GN(h) + shift`` with ``scale``/``shift`` two Linear maps of ``Linear(SiLU(temb))``,
  SiLU -> dropout -> conv3x3, plus a 1x1 shortcut when the channels change;
- channel multipliers are cumulative (level i has ``base * prod(mult[:i+1])`` channels);
- each attention block: 1x1 conv in, its own context projection ``Linear(D, D * head_channels)``
  read as ``head_channels`` tokens of width D with a GroupNorm over the D channels, then
  self-attention, cross-attention and a GELU feed-forward, each pre-normed by ONE shared
  GroupNorm (``x_norm``) and added back, then a 1x1 conv out and the block's residual;
- the up path has ``blocks + 1`` blocks per level (the last one takes the skip of the level
  above); upsampling is a 4x4 stride-2 transposed convolution; downsampling a 3x3 stride-2 conv;
- GroupNorm always has 32 groups.

Attention layers are diffusers ``Attention`` modules (``self_attention``/``cross_attention``), so
the sampler's processors (maps for eq. 5, injection for eq. 6-7) hook into them exactly as into
the diffusers UNet; their logits are ``q.k / sqrt(head_channels)``, as the release's
``(q / d^(1/4)).(k / d^(1/4))``.  The identity projection (512 -> 256) and the learnable empty
context live in :class:`uiface_ray.model.context.ProjectedContextEncoder`; this module takes the
projected context as ``encoder_hidden_states`` of shape (B, 1, D).

Key names follow the release's; :mod:`uiface_ray.release.checkpoint` maps its checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

__all__ = ["GROUPS", "OfficialUNet", "official_unet_kwargs", "release_init"]

GROUPS = 32  # the release's GroupNorm groups, everywhere


@dataclass
class OfficialUNetOutput(BaseOutput):
    """``sample``: the predicted noise eps, (B, C, H, W) (as diffusers' UNet outputs)."""

    sample: torch.Tensor


def official_unet_kwargs(tiny: bool = False) -> dict:
    """Constructor arguments: the release's config (``unet_cond_ca_cpd25_uncond20.yaml``) or a tiny one."""
    if tiny:  # same layout, 32/64 channels, 16 context tokens, 16x16 pixels
        return dict(
            in_channels=3,
            out_channels=3,
            sample_size=16,
            base_channels=32,
            channel_multipliers=(1, 2),
            attention_levels=(False, True),
            head_channels=16,
            blocks_per_resolution=1,
            cross_attention_dim=32,
        )
    return dict(
        in_channels=3,
        out_channels=3,
        sample_size=32,
        base_channels=96,
        channel_multipliers=(1, 2, 2, 2),
        attention_levels=(False, True, True, True),
        head_channels=32,
        blocks_per_resolution=2,
        cross_attention_dim=256,
    )


class TimeEmbedding(nn.Module):
    """t (B,) -> (B, 4 * base): ``[cos | sin]`` of ``base`` features, Linear, SiLU, Linear."""

    def __init__(self, base_channels: int, max_period: float = 10000.0) -> None:
        super().__init__()
        half = base_channels // 2
        # Not a buffer: the release keeps the frequencies out of the state dict.  Evaluated in the
        # release's order, (-log(P) * k) / half, so the float32 values are bit-equal to its.
        self.frequencies = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
        self.lin1 = nn.Linear(base_channels, 4 * base_channels)
        self.act = nn.SiLU()
        self.lin2 = nn.Linear(4 * base_channels, 4 * base_channels)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t[:, None].float() * self.frequencies.to(t.device)[None]  # (B, half) float32
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.lin1.weight.dtype)  # (B, base)
        return self.lin2(self.act(self.lin1(emb)))


class AdaptiveGroupNorm(nn.Module):
    """``(1 + scale) * GroupNorm(x) + shift``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, channels)

    def forward(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return (1 + scale) * self.norm(x) + shift


class ResidualBlock(nn.Module):
    """The release's residual block with "CA" conditioning (time only; identity via attention)."""

    def __init__(self, in_channels: int, out_channels: int, time_channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, in_channels)
        self.act1 = nn.SiLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb = nn.Sequential(nn.SiLU(), nn.Linear(time_channels, out_channels))
        self.scale_emb = nn.Linear(out_channels, out_channels)
        self.shift_emb = nn.Linear(out_channels, out_channels)
        self.norm2 = AdaptiveGroupNorm(out_channels)
        self.act2 = nn.SiLU()
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act1(self.norm1(x)))  # (B, out, H, W)
        emb = self.time_emb(temb)  # (B, out)
        scale = self.scale_emb(emb)[:, :, None, None]  # (B, out, 1, 1)
        shift = self.shift_emb(emb)[:, :, None, None]
        h = self.norm2(h, scale=scale, shift=shift)
        h = self.conv2(self.dropout(self.act2(h)))
        return h + self.shortcut(x)


class CrossAttentionBlock(nn.Module):
    """Self-attention, cross-attention to the block's own context tokens, feed-forward (one shared norm)."""

    def __init__(self, channels: int, context_dim: int, head_channels: int) -> None:
        super().__init__()
        heads = channels // head_channels
        self.num_tokens = head_channels  # the release reads Linear(D, D * d) as d tokens of width D
        self.context_dim = context_dim
        self.x_proj_in = nn.Conv2d(channels, channels, 1)
        self.x_proj_out = nn.Conv2d(channels, channels, 1)
        self.self_attention = Attention(
            query_dim=channels, heads=heads, dim_head=head_channels, bias=True, out_bias=True
        )
        self.c_proj_in = nn.Linear(context_dim, context_dim * self.num_tokens)
        self.cross_attention = Attention(
            query_dim=channels,
            cross_attention_dim=context_dim,
            heads=heads,
            dim_head=head_channels,
            bias=True,
            out_bias=True,
        )
        self.x_norm = nn.GroupNorm(GROUPS, channels)
        self.c_norm = nn.GroupNorm(GROUPS, context_dim)
        self.ff = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.x_norm(x.transpose(1, 2)).transpose(1, 2)  # GroupNorm over channels of (B, HW, C)

    def context_tokens(self, context: torch.Tensor) -> torch.Tensor:
        """(B, D) projected identity -> (B, num_tokens, D) tokens of this block."""
        c = self.c_proj_in(context).view(context.shape[0], self.context_dim, self.num_tokens)  # (B, D, tokens)
        return self.c_norm(c).transpose(1, 2)  # (B, tokens, D)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.x_proj_in(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        tokens = self.context_tokens(context)  # (B, tokens, D)
        h = self.self_attention(self._norm(h)) + h
        h = self.cross_attention(self._norm(h), encoder_hidden_states=tokens) + h
        h = self.ff(self._norm(h)) + h
        h = h.transpose(1, 2).reshape(batch, channels, height, width)  # (B, C, H, W)
        return self.x_proj_out(h) + x


class ResAttnBlock(nn.Module):
    """The release's Down/UpBlock: a residual block, then (optionally) an attention block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_channels: int,
        context_dim: int,
        head_channels: int,
        has_attention: bool,
    ) -> None:
        super().__init__()
        self.res = ResidualBlock(in_channels, out_channels, time_channels)
        self.attn = CrossAttentionBlock(out_channels, context_dim, head_channels) if has_attention else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.res(x, temb)
        return x if self.attn is None else self.attn(x, context)


class MiddleBlock(nn.Module):
    def __init__(self, channels: int, time_channels: int, context_dim: int, head_channels: int) -> None:
        super().__init__()
        self.res1 = ResidualBlock(channels, channels, time_channels)
        self.attn = CrossAttentionBlock(channels, context_dim, head_channels)
        self.res2 = ResidualBlock(channels, channels, time_channels)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.res2(self.attn(self.res1(x, temb), context), temb)


class Resample(nn.Module):
    """Downsample (3x3 stride-2 conv) or upsample (4x4 stride-2 transposed conv), channels unchanged."""

    def __init__(self, channels: int, up: bool) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 4, 2, 1) if up else nn.Conv2d(channels, channels, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class OfficialUNet(ModelMixin, ConfigMixin):
    """``unet(x_t (B, C, H, W), t, encoder_hidden_states=(B, 1, D)) -> (eps,)`` with the release's layout."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        sample_size: int = 32,
        base_channels: int = 96,
        channel_multipliers: tuple[int, ...] = (1, 2, 2, 2),
        attention_levels: tuple[bool, ...] = (False, True, True, True),
        head_channels: int = 32,
        blocks_per_resolution: int = 2,
        cross_attention_dim: int = 256,
    ) -> None:
        super().__init__()
        _check_sizes(
            in_channels=in_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            multipliers=channel_multipliers,
            attention_levels=attention_levels,
            head_channels=head_channels,
            context_dim=cross_attention_dim,
        )
        time_channels = 4 * base_channels
        block = dict(time_channels=time_channels, context_dim=cross_attention_dim, head_channels=head_channels)
        self.image_proj = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.time_emb = TimeEmbedding(base_channels)
        down: list[nn.Module] = []
        channels = base_channels
        for level, mult in enumerate(channel_multipliers):
            out = channels * mult  # cumulative, as the release
            for _ in range(blocks_per_resolution):
                down.append(ResAttnBlock(channels, out, has_attention=attention_levels[level], **block))
                channels = out
            if level < len(channel_multipliers) - 1:
                down.append(Resample(channels, up=False))
        self.down = nn.ModuleList(down)
        self.middle = MiddleBlock(channels, time_channels, cross_attention_dim, head_channels)
        up: list[nn.Module] = []
        for level in reversed(range(len(channel_multipliers))):
            for _ in range(blocks_per_resolution):
                up.append(ResAttnBlock(2 * channels, channels, has_attention=attention_levels[level], **block))
            out = channels // channel_multipliers[level]
            up.append(ResAttnBlock(channels + out, out, has_attention=attention_levels[level], **block))
            channels = out
            if level > 0:
                up.append(Resample(channels, up=True))
        self.up = nn.ModuleList(up)
        self.norm = nn.GroupNorm(GROUPS, base_channels)
        self.act = nn.SiLU()
        self.final = nn.Conv2d(channels, out_channels, 3, padding=1)

    # The sampler's attention hooks (same interface as diffusers' UNet2DConditionModel).
    @property
    def attn_processors(self) -> dict:
        """``{"<module name>.processor": processor}`` for every attention layer."""
        return {f"{name}.processor": m.processor for name, m in self.named_modules() if isinstance(m, Attention)}

    def set_attn_processor(self, processor) -> None:
        """One processor for every attention layer, or a dict as returned by :attr:`attn_processors`."""
        for name, module in self.named_modules():
            if isinstance(module, Attention):
                module.set_processor(processor[f"{name}.processor"] if isinstance(processor, dict) else processor)

    def forward(
        self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor, return_dict: bool = True
    ) -> "OfficialUNetOutput | tuple[torch.Tensor]":
        batch = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(batch) if t.ndim == 0 else t  # (B,)
        context = encoder_hidden_states
        if context.ndim == 3:
            if context.shape[1] != 1:
                raise ValueError(
                    f"OfficialUNet takes one context vector per sample (B, 1, D), got {tuple(context.shape)}"
                )
            context = context[:, 0]  # (B, D)
        temb = self.time_emb(t)  # (B, 4 * base)
        x = self.image_proj(sample)
        skips = [x]
        for module in self.down:
            x = module(x) if isinstance(module, Resample) else module(x, temb, context)
            skips.append(x)
        x = self.middle(x, temb, context)
        for module in self.up:
            if isinstance(module, Resample):
                x = module(x)
            else:
                x = module(torch.cat([x, skips.pop()], dim=1), temb, context)  # (B, C + C_skip, H, W)
        eps = self.final(self.act(self.norm(x)))  # (B, C, H, W)
        return OfficialUNetOutput(sample=eps) if return_dict else (eps,)


def _check_sizes(
    *, in_channels, out_channels, base_channels, multipliers, attention_levels, head_channels, context_dim
) -> None:
    if in_channels != out_channels:
        raise ValueError(f"OfficialUNet predicts eps: out_channels {out_channels} must equal in_channels {in_channels}")
    if len(attention_levels) != len(multipliers):
        raise ValueError(
            f"attention_levels needs {len(multipliers)} entries (one per level), got {len(attention_levels)}"
        )
    widths = [base_channels]
    for mult in multipliers:
        widths.append(widths[-1] * mult)
    for width in widths:
        if width % GROUPS or width % head_channels:
            raise ValueError(
                f"OfficialUNet channels {widths}: each must be divisible by {GROUPS} (GroupNorm groups) "
                f"and head_channels={head_channels}"
            )
    if context_dim % GROUPS or base_channels % 2:
        raise ValueError(f"cross_attention_dim {context_dim} must be divisible by {GROUPS}; base_channels even")


@torch.no_grad()
def release_init(unet: OfficialUNet) -> OfficialUNet:
    """The release's initialisation for training from scratch: zero the last convolution of every
    residual block (``conv2``), the output projection of every attention block (``x_proj_out``)
    and the final convolution, so every block starts as the identity and eps starts at 0."""
    zeroed = [unet.final]
    for module in unet.modules():
        if isinstance(module, ResidualBlock):
            zeroed.append(module.conv2)
        elif isinstance(module, CrossAttentionBlock):
            zeroed.append(module.x_proj_out)
    for conv in zeroed:
        conv.weight.zero_()
        conv.bias.zero_()
    return unet
