"""Shared pieces of the sampler tests: a tiny random UNet and a slow, obviously correct reference.

The reference makes a separate UNet call for every pass of every sample at every step, computes
attention explicitly (logits -> softmax -> values) in a processor of its own, writes DDIM eta 0
out by hand and takes t0 from the recorded maps with a plain Python loop.  It shares no code with
``uiface_ray.sample`` beyond ``SamplerConfig``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel

from uiface_ray.release.unet import OfficialUNet, official_unet_kwargs
from uiface_ray.sample.config import SamplerConfig

LATENT = (3, 8, 8)
TOKENS, DIM = 6, 32
#: The two UNet families the sampler runs: diffusers' UNet2DConditionModel and the release's layout.
FAMILIES = ("diffusers", "official")
#: Name suffix of the cross-attention layers in each family.
CROSS_NAME = {"diffusers": "attn2", "official": "cross_attention"}


def family_of(unet) -> str:
    return "official" if isinstance(unet, OfficialUNet) else "diffusers"


def tiny_unet(dtype: torch.dtype = torch.float64, seed: int = 0, sample_size: int = 8, family: str = "diffusers"):
    """diffusers: cross-attention at two resolutions (8x8 and 4x4 for sample_size 8) plus the mid block;
    official: the release's layout at 32/64 channels, attention (4 blocks) at 4x4, context width DIM."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "official":
            kwargs = official_unet_kwargs(tiny=True)
            kwargs.update(sample_size=sample_size, cross_attention_dim=DIM)
            return OfficialUNet(**kwargs).to(dtype).eval()
        unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=DIM,
            attention_head_dim=4,
            norm_num_groups=8,
        )
    return unet.to(dtype).eval()


def scheduler() -> DDIMScheduler:
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)


def tokens(
    batch: int, seed: int = 1, dtype: torch.dtype = torch.float64, family: str = "diffusers"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(context_tokens, empty_tokens), each (B, N, D); the empty tokens are one row repeated.
    The official family takes one projected context vector per sample: N = 1."""
    g = torch.Generator().manual_seed(seed)
    n = 1 if family == "official" else TOKENS
    context = torch.randn(batch, n, DIM, generator=g, dtype=torch.float64)
    empty = torch.randn(1, n, DIM, generator=g, dtype=torch.float64).expand(batch, -1, -1)
    return context.to(dtype), empty.to(dtype).contiguous()


def generators(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


class CallCounter:
    """Counts UNet forward calls and the rows they carry (a forward pre-hook)."""

    def __init__(self, unet):
        self.calls, self.rows = 0, 0
        self.handle = unet.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.calls += 1
        self.rows += args[0].shape[0]

    def remove(self):
        self.handle.remove()


# --------------------------------------------------------------------------------------------
# Reference


class ReferenceAttention:
    """Explicit attention. mode 'record' keeps every layer's logits; 'replay' injects them."""

    def __init__(self, cfg: SamplerConfig):
        self.cfg, self.mode, self.logits = cfg, "plain", {}

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        b, length, _ = hidden_states.shape
        split = lambda x: x.view(b, x.shape[1], attn.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(attn.to_q(hidden_states)), split(attn.to_k(context)), split(attn.to_v(context))
        logits = torch.einsum("bhqd,bhkd->bhqk", q, k) * attn.scale
        if self.mode == "record":
            self.logits[id(attn)] = logits
        elif self.mode == "replay":
            ce = self.logits[id(attn)]
            if not cross and self.cfg.inject_self:
                logits = ce  # h_self^c = h_self^(c_e)
            if cross and self.cfg.inject_cross:
                a = self.cfg.injection_blend
                target_mean = a * ce.mean(-1, keepdim=True) + (1 - a) * logits.mean(-1, keepdim=True)
                target_std = a * ce.std(-1, keepdim=True) + (1 - a) * logits.std(-1, keepdim=True)
                logits = (logits - logits.mean(-1, keepdim=True)) / logits.std(-1, keepdim=True)
                logits = logits * target_std + target_mean
        out = torch.einsum("bhqk,bhkd->bhqd", logits.softmax(-1), v)
        out = out.transpose(1, 2).reshape(b, length, -1)
        return attn.to_out[1](attn.to_out[0](out))


def reference_map(unet, store: ReferenceAttention, cfg: SamplerConfig) -> torch.Tensor:
    """h_t of one sample from the recorded c_e logits of the cross-attention layers."""
    side = cfg.map_resolution or LATENT[1]
    maps = []
    for name, module in unet.named_modules():
        if name.endswith(CROSS_NAME[family_of(unet)]):
            logits = store.logits[id(module)][0].float()  # (heads, HW, N)
            m = logits.softmax(dim=1).mean(dim=(0, 2))  # (HW,)
            n = int(round(m.numel() ** 0.5))
            m = m.view(1, 1, n, n)
            if cfg.layer_max_normalise:
                m = m / m.max()
            maps.append(F.interpolate(m, size=(side, side), mode="bilinear", align_corners=False)[0, 0])
    h = torch.stack(maps).mean(0)
    return (h - h.min()) / (h.max() - h.min())


def reference_sample(unet, context, empty, seed: int, cfg: SamplerConfig):
    """One image, the slow way: returns (z_0, t0, d_t list, evaluations)."""
    sched = scheduler()
    sched.set_timesteps(cfg.num_inference_steps)
    alphas = sched.alphas_cumprod.double()
    ratio = sched.config.num_train_timesteps // cfg.num_inference_steps
    dtype = unet.dtype
    state = torch.float64 if dtype == torch.float64 else torch.float32
    z = torch.randn(LATENT, generator=torch.Generator().manual_seed(seed)).to(state)[None]
    store = ReferenceAttention(cfg)
    original = unet.attn_processors
    unet.set_attn_processor(store)
    adaptive = cfg.mode in ("two_stage_adaptive", "uiface")
    inject = cfg.mode in ("attention_injection", "uiface")
    switched_at, prev_h, curve, evaluations = None, None, [], 0
    for step, t in enumerate(sched.timesteps.tolist()):
        if cfg.mode in ("baseline", "attention_injection"):
            stage_two = True
        elif cfg.mode == "two_stage_fixed":
            stage_two = t < cfg.t0
        else:
            stage_two = switched_at is not None or t < cfg.max_t0
        store.mode = "record"
        with torch.no_grad():
            eps_ce = unet(z.to(dtype), t, encoder_hidden_states=empty[None].to(dtype)).sample.to(state)
        evaluations += 1
        d = float("nan")
        if adaptive and not stage_two:
            h = reference_map(unet, store, cfg)
            if prev_h is not None:
                d = (h - prev_h).abs().mean().item()
                if d < cfg.threshold:
                    switched_at = t
                    stage_two = cfg.switch == "same_step"  # same_step guides this very step
            prev_h = h
        curve.append(d)
        eps = eps_ce
        if stage_two:
            store.mode = "replay" if inject else "plain"
            with torch.no_grad():
                eps_c = unet(z.to(dtype), t, encoder_hidden_states=context[None].to(dtype)).sample.to(state)
            evaluations += 1
            w = cfg.guidance_scale
            eps = (w + 1) * eps_c - w * eps_ce
        # DDIM, eta 0
        a_t = alphas[t]
        a_prev = alphas[t - ratio] if t - ratio >= 0 else torch.tensor(1.0, dtype=torch.float64)
        x0 = (z - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        z = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).to(state)
    unet.set_attn_processor(original)
    if cfg.mode in ("baseline", "attention_injection"):
        t0 = sched.config.num_train_timesteps
    elif cfg.mode == "two_stage_fixed":
        t0 = cfg.t0
    else:
        t0 = cfg.max_t0 if switched_at is None else switched_at
    return z[0], t0, curve, evaluations
