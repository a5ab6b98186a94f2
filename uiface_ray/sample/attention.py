"""Attention processors: c_e cross-attention maps for eq. 5 and attention injection (sec. 3.4).

One UNet call carries two kinds of rows: rows ``[0, num_empty)`` are c_e passes, the rest are
conditional passes; conditional row k belongs to the same sample as c_e row ``source[k]``.
A sample that switches to stage 2 at the step its d_t settles (``switch="same_step"``) gets its
conditional pass in a second, conditional-only call of that step; the main call keeps what
injection needs of the c_e rows that might switch (``keep`` -> ``kept``: q and k per
self-attention layer, per-query logit mean and std per cross-attention layer), and in that second
call ``source`` indexes the kept rows.  The processor is installed with ``unet.set_attn_processor`` and reads an :class:`AttentionPlan`
that the step loop sets before each call.

Self-attention injection, ``h_self^c = h_self^(c_e)``: the conditional rows take the c_e rows'
query and key, so ``softmax(q_ce k_ce^T / sqrt(d)) v_c`` still runs as one fused SDPA and the
HW x HW probabilities are never materialised (reusing the logits, as the release does, gives
the same probabilities).  Cross-attention injection (eq. 6-7): the conditional logits are
standardised per query over the context tokens and rescaled to
``blend * (mean, std of c_e's) + (1 - blend) * (its own)``.  Cross-attention logits
(HW x tokens, small) are materialised only in calls that record maps or inject; every other
attention runs through diffusers' fused ``AttnProcessor2_0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from uiface_ray.sample.adaptive_t0 import layer_grid, spatial_map

__all__ = ["AttentionPlan", "UIFaceAttnProcessor", "query_stats", "renormalise_cross_logits"]


@dataclass
class AttentionPlan:
    """What the processors do during one UNet call."""

    num_empty: int  # rows [0, num_empty) are c_e passes
    latent_hw: tuple[int, int]  # (H, W) of the latent, to put maps back on a grid
    record: torch.Tensor | None = None  # c_e rows whose cross-attention maps eq. 5 needs
    source: torch.Tensor | None = None  # per conditional row: its sample's c_e row, or its row in `kept`
    inject_self: bool = False
    inject_cross: bool = False
    blend: float = 1.0
    keep: torch.Tensor | None = None  # c_e rows whose injection inputs a later call of this step may need
    kept: dict = field(default_factory=dict)  # per layer: (q, k) of self-, (mean, std) of cross-attention
    maps: list[torch.Tensor] = field(default_factory=list)  # filled: one (len(record), h, w) per layer

    def injects(self, is_cross: bool) -> bool:
        """Whether this call's layers of that kind take part in injection (as source or as target)."""
        wanted = self.inject_cross if is_cross else self.inject_self
        return wanted and (self.source is not None or self.keep is not None)


def query_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6: mean and std over the context tokens, per query: (R, heads, HW, N) -> 2x (R, heads, HW, 1)."""
    return logits.mean(dim=-1, keepdim=True), logits.std(dim=-1, keepdim=True)


def renormalise_cross_logits(
    logits_c: torch.Tensor, mean_ce: torch.Tensor, std_ce: torch.Tensor, blend: float
) -> torch.Tensor:
    """Eq. 7 on logits (R, heads, HW, N), per query, towards blend*(c_e stats) + (1-blend)*(own)."""
    mean_c, std_c = query_stats(logits_c)
    target_mean = blend * mean_ce + (1.0 - blend) * mean_c
    target_std = blend * std_ce + (1.0 - blend) * std_c
    return (logits_c - mean_c) / std_c.clamp_min(torch.finfo(logits_c.dtype).tiny) * target_std + target_mean


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, inner = x.shape
    return x.view(batch, length, heads, inner // heads).transpose(1, 2)  # (B, heads, L, d)


class UIFaceAttnProcessor:
    """One processor for every attention layer; fused SDPA unless the plan needs more."""

    def __init__(self) -> None:
        self.plan: AttentionPlan | None = None
        self._fused = AttnProcessor2_0()

    def _active(self, is_cross: bool) -> bool:
        plan = self.plan
        if plan is None:
            return False
        return plan.injects(is_cross) or (is_cross and plan.record is not None)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        is_cross = encoder_hidden_states is not None
        if not self._active(is_cross):
            return self._fused(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None or attn.spatial_norm is not None:
            raise NotImplementedError("UIFace attention injection supports no attention mask or spatial norm")
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)  # (B, HW, C)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if is_cross:
            if attn.norm_cross:
                encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
            out = self._cross(attn, hidden_states, encoder_hidden_states)
        else:
            out = self._self(attn, hidden_states)
        out = out.transpose(1, 2).reshape(out.shape[0], -1, out.shape[1] * out.shape[3])  # (B, HW, heads*d)
        out = attn.to_out[1](attn.to_out[0](out.to(hidden_states.dtype)))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _self(self, attn: Attention, x: torch.Tensor) -> torch.Tensor:
        """Self-attention whose conditional rows use their c_e row's q and k: (B, heads, HW, d)."""
        plan, n = self.plan, self.plan.num_empty
        value = _heads(attn.to_v(x), attn.heads)  # (B, heads, HW, d): every row's own values
        if n:
            query = _heads(attn.to_q(x[:n]), attn.heads)  # (n, heads, HW, d): c_e rows only
            key = _heads(attn.to_k(x[:n]), attn.heads)
            if attn.norm_q is not None:
                query = attn.norm_q(query)
            if attn.norm_k is not None:
                key = attn.norm_k(key)
            if plan.keep is not None:
                plan.kept[id(attn)] = (query[plan.keep], key[plan.keep])
            source_q, source_k = query, key
        else:  # a same-step call of conditional rows only: c_e's q and k were kept by the main call
            source_q, source_k = plan.kept[id(attn)]
            query = key = source_q[:0]
        if plan.source is not None:
            query = torch.cat([query, source_q[plan.source]])  # (B, heads, HW, d)
            key = torch.cat([key, source_k[plan.source]])
        return F.scaled_dot_product_attention(query, key, value, scale=attn.scale)

    def _cross(self, attn: Attention, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Cross-attention with materialised logits (B, heads, HW, N): records maps, injects eq. 7."""
        plan = self.plan
        query = _heads(attn.to_q(x), attn.heads)  # (B, heads, HW, d)
        key = _heads(attn.to_k(context), attn.heads)  # (B, heads, N, d)
        value = _heads(attn.to_v(context), attn.heads)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        compute = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
        logits = (query.to(compute) @ key.to(compute).transpose(-1, -2)) * attn.scale  # (B, heads, HW, N)
        if plan.record is not None:
            grid = layer_grid(logits.shape[2], plan.latent_hw)
            plan.maps.append(spatial_map(logits[plan.record], grid))
        n = plan.num_empty
        if plan.inject_cross and plan.keep is not None:
            plan.kept[id(attn)] = query_stats(logits[plan.keep])
        if plan.inject_cross and plan.source is not None:
            if n:
                mean_ce, std_ce = query_stats(logits[plan.source])
            else:  # a same-step call of conditional rows only: the main call kept c_e's statistics
                mean_ce, std_ce = (stat[plan.source] for stat in plan.kept[id(attn)])
            logits = torch.cat([logits[:n], renormalise_cross_logits(logits[n:], mean_ce, std_ce, plan.blend)])
        probs = logits.softmax(dim=-1).to(value.dtype)  # over the context tokens
        return probs @ value  # (B, heads, HW, d)
