"""The release's sampler (``sample_ddim_2stage``) as options of our one sampler, on the release's UNet.

The reference below is written from the release's ``diffusion/ddpm.py`` and ``models/diffusion/nn.py``:
per step two full passes (c_e, then the identity or c_e by a per-sample flag), attention logits
``(q / d^(1/4)) . (k / d^(1/4))`` replayed from the c_e pass, the boundary map from the second pass,
the flag set after the step's eps, the forced switch at ``step_th``, and DDIM with
``alpha_bar[t_prev - 1]``.  It shares no code with ``uiface_ray.sample``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_sampler_common import LATENT, CallCounter, generators, scheduler, tiny_unet, tokens
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.sample.ddim import ddim_step
from uiface_ray.schedule import release_alpha_bars
from uiface_ray.sample.loop import run_sampler

torch.set_num_threads(1)
STEPS = 10
# On the tiny official UNet, seeds 0-2 settle at t = 500, 600 and 500: each spends steps in the
# release's "conditional, no guidance" window between its switch and max_t0.
RELEASE = dict(num_inference_steps=STEPS, threshold=0.06, max_t0=300, output_size=None)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(torch.float64, family="official")


class ReleaseAttention:
    """record: keep this pass's logits; self_only / both: replay c_e's self logits (and re-standardise cross)."""

    def __init__(self, blend: float):
        self.blend, self.mode, self.stored, self.cross_now = blend, "record", {}, []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        b, length, _ = hidden_states.shape
        split = lambda x: x.view(b, x.shape[1], attn.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(attn.to_q(hidden_states)), split(attn.to_k(context)), split(attn.to_v(context))
        scale = 1 / math.sqrt(math.sqrt(q.shape[-1]))
        raw = torch.einsum("bhqd,bhkd->bhqk", q * scale, k * scale)
        logits = raw
        if self.mode == "record":
            self.stored[id(attn)] = raw
        else:
            src = self.stored[id(attn)]
            if not cross:
                logits = src
            elif self.mode == "both":
                mean, std = raw.mean(-1, keepdim=True), raw.std(-1, keepdim=True)
                t_mean = self.blend * src.mean(-1, keepdim=True) + (1 - self.blend) * mean
                t_std = self.blend * src.std(-1, keepdim=True) + (1 - self.blend) * std
                logits = (raw - mean) / std * t_std + t_mean
            if cross:
                self.cross_now.append(raw)
        out = torch.einsum("bhqk,bhkd->bhqd", logits.softmax(-1), v).transpose(1, 2).reshape(b, length, -1)
        return attn.to_out[1](attn.to_out[0](out))


def release_map(cross_logits, size: int = 32) -> torch.Tensor:
    maps = []
    for logits in cross_logits:  # (1, heads, HW, N)
        m = logits.softmax(dim=-2).mean(dim=-1).mean(dim=1)  # (1, HW)
        m = m / m.max(dim=1, keepdim=True)[0]
        side = int(math.sqrt(m.shape[1]))
        m = F.interpolate(m.reshape(1, 1, side, side), size=(size, size), mode="bilinear", align_corners=False)
        maps.append(m[:, 0].clamp(0, 1))
    h = torch.stack(maps, dim=1).mean(dim=1)  # (1, size, size)
    return (h - h.min()) / (h.max() - h.min())


def release_reference(unet, context, empty, seed: int, cfg: SamplerConfig):
    """One image the release's way: (z_0, t0, d_t curve)."""
    T, skip, w = 1000, 1000 // cfg.num_inference_steps, cfg.guidance_scale
    alpha_bars = torch.cumsum(torch.log(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float32)), 0).exp()
    z = torch.randn(LATENT, generator=torch.Generator().manual_seed(seed)).double()[None]
    proc = ReleaseAttention(cfg.injection_blend)
    original = unet.attn_processors
    unet.set_attn_processor(proc)
    flag, prev, t0, curve = False, None, cfg.max_t0, []
    call = lambda c: unet(z, torch.tensor([i]), encoder_hidden_states=c[None]).sample  # noqa: E731
    with torch.no_grad():
        for i in reversed(range(0, T, skip)):
            d = float("nan")
            proc.mode, proc.cross_now = "record", []
            eps_u = call(empty)
            if i < cfg.max_t0:
                proc.mode = "both"
                eps = (1 + w) * call(context) - w * eps_u
            else:
                proc.mode, proc.cross_now = "self_only", []
                eps = call(context if flag else empty)
                h = release_map(proc.cross_now, cfg.map_resolution)
                if prev is not None:
                    d = (prev - h).abs().mean().item()
                    if d < cfg.threshold and not flag:
                        flag, t0 = True, i
                prev = h
            curve.append(d)
            a_t = alpha_bars[i]
            a_prev = alpha_bars[i - skip - 1] if i - skip >= 1 else torch.tensor(1.0)
            x0 = (z - (1 - a_t) ** 0.5 * eps) / a_t**0.5
            eps = (z - a_t**0.5 * x0) / (1 - a_t) ** 0.5
            z = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    unet.set_attn_processor(original)
    return z[0], t0, curve


def test_official_preset_matches_the_release_sampler(unet):
    cfg = SamplerConfig.official(**RELEASE)
    context, empty = tokens(3, family="official")
    out = run_sampler(unet, scheduler(), context, empty, generators([0, 1, 2]), cfg, LATENT)
    t0s = []
    for i in range(3):
        z, t0, curve = release_reference(unet, context[i], empty[i], i, cfg)
        assert (out.latents[i] - z).abs().max().item() < 1e-9 * max(z.abs().max().item(), 1.0)
        assert out.t0[i].item() == t0
        curve = torch.tensor(curve, dtype=torch.float32)
        assert torch.equal(torch.isnan(out.d_t[i]), torch.isnan(curve))  # (c): d_t goes on after the switch
        assert torch.allclose(out.d_t[i].nan_to_num(), curve.nan_to_num(), atol=1e-5)
        t0s.append(t0)
    assert t0s == [500, 600, 500], "the tiny UNet changed: pick RELEASE's threshold again"
    # each option matters on this batch: without it, the result moves
    for option in (dict(ddim_alpha_prev="standard"), dict(early_switch="guided")):
        other = run_sampler(
            unet,
            scheduler(),
            context,
            empty,
            generators([0, 1, 2]),
            SamplerConfig.official(**RELEASE, **option),
            LATENT,
        )
        assert (other.latents - out.latents).abs().max() > 1e-6, option


def test_official_preset_costs_and_batch_invariance(unet):
    cfg = SamplerConfig.official(**RELEASE)
    context, empty = tokens(3, family="official")
    counter = CallCounter(unet)
    try:
        batch = run_sampler(unet, scheduler(), context, empty, generators([0, 1, 2]), cfg, LATENT)
    finally:
        counter.remove()
    # one call per step (next-step switch); c_e at every step, the identity pass once switched (t < t0)
    after = (batch.timesteps[None, :] < batch.t0[:, None]).sum(dim=1)
    assert torch.equal(batch.unet_evaluations, STEPS + after)
    assert counter.calls == STEPS and counter.rows == int(batch.unet_evaluations.sum())
    for i in range(3):
        alone = run_sampler(unet, scheduler(), context[i : i + 1], empty[i : i + 1], generators([i]), cfg, LATENT)
        assert (alone.latents[0] - batch.latents[i]).abs().max() < 1e-10
        assert alone.t0[0] == batch.t0[i]


def test_release_ddim_uses_alpha_bar_one_index_off():
    sched = scheduler()
    sched.set_timesteps(STEPS)
    alpha_bars = release_alpha_bars(sched.betas)
    z, eps = torch.randn(1, 3, 2, 2, dtype=torch.float64), torch.randn(1, 3, 2, 2, dtype=torch.float64)
    for t, t_prev in ((900, 800), (100, 0)):
        got = ddim_step(sched, eps, torch.tensor(t), z, "release")
        a_t = alpha_bars[t].double()
        a_prev = alpha_bars[t_prev - 1].double() if t_prev >= 1 else torch.tensor(1.0, dtype=torch.float64)
        x0 = (z - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        assert torch.allclose(got, a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps, rtol=1e-6, atol=1e-7)
    standard = ddim_step(sched, eps, torch.tensor(900), z, "standard")
    assert not torch.allclose(standard, ddim_step(sched, eps, torch.tensor(900), z, "release"), rtol=1e-6)
    torch.testing.assert_close(alpha_bars, sched.alphas_cumprod, rtol=1e-5, atol=1e-7)


def test_official_config_yaml_is_the_preset():
    import yaml
    from pathlib import Path

    tree = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "synthesize_official.yaml").read_text())
    assert SamplerConfig(**tree["sampler"]) == SamplerConfig.official()


def test_output_size_resizes_like_the_release():
    from uiface_ray.sample.api import to_uint8

    images = torch.rand(2, 3, 16, 16, dtype=torch.float32) * 2.4 - 1.2
    got = to_uint8(images, 12)
    unit = F.interpolate((images.clamp(-1, 1) + 1) / 2, size=(12, 12), mode="bilinear", align_corners=False)
    expected = np.floor(unit.numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert got.shape == (2, 12, 12, 3) and np.array_equal(got, expected)
    assert to_uint8(images).shape == (2, 16, 16, 3)


def test_sampler_api_runs_an_imported_official_bundle(tmp_path):
    from uiface_ray.model import save_model
    from uiface_ray.release.importer import build_official_model
    from uiface_ray.sample import UIFaceSampler

    save_model(build_official_model("tiny", seed=3), str(tmp_path / "m"))  # latent space through VQ-f4
    cfg = SamplerConfig.official(num_inference_steps=4, output_size=24)
    sampler = UIFaceSampler.from_pretrained(str(tmp_path / "m"), config=cfg)
    embeddings = np.random.default_rng(0).normal(size=(2, 512)).astype(np.float32)
    batch = sampler.sample(embeddings, seeds=[5, 6])
    assert batch.images.shape == (2, 24, 24, 3) and batch.images.dtype == np.uint8
    assert (batch.unet_evaluations >= 4).all() and batch.mode == "uiface"
    again = sampler.sample(embeddings[:1], seeds=[5])
    assert np.array_equal(again.images[0], batch.images[0])  # batch-independent, seeded
