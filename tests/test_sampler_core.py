"""The sampler core against the slow reference, and the edge cases that pin eq. 4-7."""

from __future__ import annotations

import pytest
import torch

from test_sampler_common import (
    CROSS_NAME,
    FAMILIES,
    LATENT,
    CallCounter,
    family_of,
    generators,
    reference_sample,
    scheduler,
    tiny_unet,
    tokens,
)
from uiface_ray.sample import attention as attention_module
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.sample.loop import run_sampler

torch.set_num_threads(1)
STEPS = 10  # timesteps 900, 800, ..., 0
# Per UNet family, a threshold at which the tiny UNet's 3 samples settle at different t0 (checked in
# the test): diffusers at t = 500, 600 and 400; official at 500, 600 and 500.  Seeds 0-3 settle at two
# distinct steps in both families.
ADAPTIVE_BY_FAMILY = {"diffusers": dict(threshold=0.041, max_t0=300), "official": dict(threshold=0.06, max_t0=300)}
T0S = {"diffusers": [500, 600, 400], "official": [500, 600, 500]}
ADAPTIVE = ADAPTIVE_BY_FAMILY["diffusers"]  # CASES' values; swapped per family in `config`


# The official family runs every test here under -m slow (and a fast subset in test_official_sampler.py).
@pytest.fixture(scope="module", params=[FAMILIES[0], pytest.param(FAMILIES[1], marks=pytest.mark.slow)])
def unet(request):
    return tiny_unet(torch.float64, family=request.param)


def config(unet, **values) -> SamplerConfig:
    """A SamplerConfig whose adaptive threshold/max_t0 are the ones chosen for this UNet family."""
    if values.get("threshold") == ADAPTIVE["threshold"]:
        values.update(ADAPTIVE_BY_FAMILY[family_of(unet)])
    return SamplerConfig(**values)


def family_tokens(unet, batch: int, **kw):
    return tokens(batch, family=family_of(unet), **kw)


def run(unet, cfg, seeds, context=None, empty=None):
    if context is None:
        context, empty = family_tokens(unet, len(seeds), dtype=unet.dtype)
    return run_sampler(unet, scheduler(), context, empty, generators(seeds), cfg, LATENT)


def close(a, b, rel=1e-9):
    scale = max(a.abs().max().item(), b.abs().max().item(), 1.0)
    return (a - b).abs().max().item() <= rel * scale


CASES = [
    dict(mode="baseline", guidance_scale=1.5),
    dict(mode="two_stage_fixed", guidance_scale=1.5),
    dict(mode="two_stage_adaptive", guidance_scale=1.0, **ADAPTIVE),
    dict(mode="attention_injection", guidance_scale=1.0, injection_blend=0.5),
    dict(mode="uiface", guidance_scale=1.0, **ADAPTIVE),
    dict(
        mode="uiface", guidance_scale=2.0, injection_blend=0.5, map_resolution=6, layer_max_normalise=False, **ADAPTIVE
    ),
    pytest.param(
        dict(mode="two_stage_adaptive", switch="next_step", guidance_scale=1.5, **ADAPTIVE), marks=pytest.mark.slow
    ),
    pytest.param(dict(mode="uiface", switch="next_step", guidance_scale=1.0, **ADAPTIVE), marks=pytest.mark.slow),
]


def case_id(case):
    return case["mode"] + ("-release" if "map_resolution" in case else "") + ("-next" if "switch" in case else "")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_mode_matches_the_reference(unet, case):
    cfg = config(unet, num_inference_steps=STEPS, **case)
    context, empty = family_tokens(unet, 3)
    out = run(unet, cfg, [0, 1, 2], context, empty)
    t0s = []
    for i in range(3):
        z, t0, curve, evaluations = reference_sample(unet, context[i], empty[i], i, cfg)
        # DDIM's alphas are float32 in diffusers, so float64 runs agree to ~1e-8, not 1e-15
        assert close(out.latents[i], z, rel=1e-6), (cfg.mode, i, (out.latents[i] - z).abs().max())
        assert out.t0[i].item() == t0
        assert out.unet_evaluations[i].item() == evaluations
        curve = torch.tensor(curve, dtype=torch.float32)
        assert torch.equal(torch.isnan(out.d_t[i]), torch.isnan(curve))
        assert torch.allclose(out.d_t[i].nan_to_num(), curve.nan_to_num(), atol=1e-5)
        t0s.append(t0)
    if cfg.adaptive and cfg.map_resolution is None:
        assert t0s == T0S[family_of(unet)], "the tiny UNet changed: pick ADAPTIVE again so t0 differs per sample"


def settle_steps(out, threshold: float) -> int:
    """Number of distinct steps at which some sample's d_t settled (each costs one same-step call)."""
    return len({int(t) for t, curve in zip(out.t0, out.d_t) if bool((curve < threshold).any())})


@pytest.mark.parametrize("switch", ["same_step", "next_step"])
def test_uiface_costs_s_plus_stage_two_steps(unet, switch):
    cfg = config(unet, num_inference_steps=STEPS, switch=switch, **ADAPTIVE)
    counter = CallCounter(unet)
    try:
        out = run(unet, cfg, [0, 1, 2, 3])
    finally:
        counter.remove()
    t, t0 = out.timesteps[None, :], out.t0[:, None]
    after = (t <= t0) if switch == "same_step" else (t < t0)
    assert torch.equal(out.unet_evaluations, STEPS + after.sum(dim=1))
    assert (out.unet_evaluations < 2 * STEPS).all()
    extra = settle_steps(out, cfg.threshold) if switch == "same_step" else 0
    assert extra == (2 if switch == "same_step" else 0)  # samples settle at t = 600 and t = 500
    assert counter.calls == STEPS + extra == out.unet_calls
    assert counter.rows == int(out.unet_evaluations.sum())


def test_fixed_t0_above_every_timestep_is_baseline(unet):
    base = run(unet, config(unet, mode="baseline", num_inference_steps=STEPS), [5, 6])
    fixed = run(unet, config(unet, mode="two_stage_fixed", t0=1000, num_inference_steps=STEPS), [5, 6])
    assert torch.equal(base.latents, fixed.latents)
    assert torch.equal(base.unet_evaluations, fixed.unet_evaluations)


def test_fixed_t0_zero_is_pure_empty_context_sampling(unet):
    out = run(unet, config(unet, mode="two_stage_fixed", t0=0, num_inference_steps=STEPS), [5, 6])
    assert (out.unet_evaluations == STEPS).all()
    _, empty = family_tokens(unet, 2)
    sched = scheduler()
    sched.set_timesteps(STEPS)
    for i, seed in enumerate([5, 6]):
        z = torch.randn(LATENT, generator=torch.Generator().manual_seed(seed)).double()[None]
        for t in sched.timesteps:  # the plain diffusers DDIM loop with c_e
            with torch.no_grad():
                eps = unet(z, t, encoder_hidden_states=empty[i : i + 1]).sample
            z = sched.step(eps, t, z, eta=0.0).prev_sample
        assert close(out.latents[i], z[0], rel=1e-12)


def test_uiface_without_self_injection_and_blend_zero_is_two_stage_adaptive(unet):
    plain = run(unet, config(unet, mode="two_stage_adaptive", num_inference_steps=STEPS, **ADAPTIVE), [0, 2])
    blend0 = config(unet, mode="uiface", num_inference_steps=STEPS, inject_self=False, injection_blend=0.0, **ADAPTIVE)
    assert close(run(unet, blend0, [0, 2]).latents, plain.latents, rel=1e-12)
    full = run(unet, config(unet, mode="uiface", num_inference_steps=STEPS, **ADAPTIVE), [0, 2])
    assert not close(full.latents, plain.latents, rel=1e-6), "injection had no effect"


@pytest.mark.parametrize(
    "mode", ["uiface", "attention_injection", pytest.param("two_stage_fixed", marks=pytest.mark.slow)]
)
def test_batch_invariance_alone_and_in_any_order(unet, mode):
    cfg = config(unet, mode=mode, num_inference_steps=STEPS, **ADAPTIVE)
    seeds = [0, 1, 2]
    context, empty = family_tokens(unet, 3)
    batch = run(unet, cfg, seeds, context, empty)
    order = [2, 0, 1]
    shuffled = run(unet, cfg, [seeds[i] for i in order], context[order], empty[order])
    for k, i in enumerate(order):
        alone = run(unet, cfg, [seeds[i]], context[i : i + 1], empty[i : i + 1])
        for other in (alone, shuffled):
            j = 0 if other is alone else k
            assert close(batch.latents[i], other.latents[j], rel=1e-10)
            assert batch.t0[i] == other.t0[j]
            assert batch.unet_evaluations[i] == other.unet_evaluations[j]


def test_batch_invariance_float32(unet):
    unet32 = tiny_unet(torch.float32, family=family_of(unet))
    cfg = config(unet, num_inference_steps=STEPS, **ADAPTIVE)
    context, empty = family_tokens(unet, 3, dtype=torch.float32)
    batch = run(unet32, cfg, [0, 1, 2], context, empty)
    for i in range(3):
        alone = run(unet32, cfg, [i], context[i : i + 1], empty[i : i + 1])
        assert close(batch.latents[i], alone.latents[0], rel=1e-4)
        assert batch.t0[i] == alone.t0[0]


def test_seed_independence(unet):
    cfg = config(unet, num_inference_steps=STEPS, **ADAPTIVE)
    context, empty = family_tokens(unet, 2)
    a = run(unet, cfg, [11, 12], context, empty)
    b = run(unet, cfg, [11, 13], context, empty)
    again = run(unet, cfg, [11, 12], context, empty)
    assert torch.equal(a.latents, again.latents)  # same seeds, same images
    assert close(a.latents[0], b.latents[0], rel=1e-10)  # image 0 ignores its neighbour's seed
    assert not close(a.latents[1], b.latents[1], rel=1e-2)  # a different seed, a different image


def _count_manual(monkeypatch):
    counts = {"self": 0, "cross": 0}
    for kind in ("self", "cross"):
        original = getattr(attention_module.UIFaceAttnProcessor, f"_{kind}")

        def spy(self, *args, _original=original, _kind=kind):
            counts[_kind] += 1
            return _original(self, *args)

        monkeypatch.setattr(attention_module.UIFaceAttnProcessor, f"_{kind}", spy)
    return counts


@pytest.mark.parametrize("mode", ["baseline", "two_stage_fixed", "two_stage_adaptive", "attention_injection", "uiface"])
def test_attention_materialised_only_where_needed(unet, monkeypatch, mode):
    counts = _count_manual(monkeypatch)
    cfg = config(unet, mode=mode, num_inference_steps=STEPS, **ADAPTIVE)
    out = run(unet, cfg, [0, 2])
    layers = sum(1 for name in unet.attn_processors if CROSS_NAME[family_of(unet)] in name)  # one self per cross here
    if mode in ("baseline", "two_stage_fixed"):
        assert counts == {"self": 0, "cross": 0}
    elif mode == "two_stage_adaptive":
        steps_with_stage_one = int((out.timesteps >= out.t0.min()).sum())  # some sample still in stage 1
        assert counts == {"self": 0, "cross": layers * steps_with_stage_one}
    elif mode == "attention_injection":
        assert counts == {"self": layers * STEPS, "cross": layers * STEPS}
    else:  # every main call records, keeps or injects, plus one conditional-only call per settling step;
        calls = STEPS + settle_steps(
            out, cfg.threshold
        )  # at step 0 (no d_t yet, nobody can switch) self-attention stays fused
        assert counts == {"self": layers * (calls - 1), "cross": layers * calls}


def test_guidance_zero_without_injection_skips_the_empty_pass_in_stage_two(unet):
    cfg = config(unet, mode="two_stage_fixed", guidance_scale=0.0, num_inference_steps=STEPS)
    context, empty = family_tokens(unet, 2)
    out = run(unet, cfg, [0, 1], context, empty)
    assert (out.unet_evaluations == STEPS).all()  # one pass per step: c_e, then c alone
    for i in range(2):
        z, _, _, _ = reference_sample(unet, context[i], empty[i], i, cfg)
        assert close(out.latents[i], z, rel=1e-6)
