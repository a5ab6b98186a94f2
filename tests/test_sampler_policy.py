"""The training grid and the Figure 2 interval study run through the sampler core's one DDIM loop.

Each is pinned against the private loop it had before (train/grid.py's ``ddim_sample`` and
paper/interval_sampling.py's loop), written out below as they were: on a tiny random model the
core must give the same latents, bit for bit in float32 (the same ops on the same batches), and in
float64 bit for bit for the grid and to float32 rounding for the interval study (its old loop kept
the latents in float32 between steps; the core keeps a float64 UNet's latents in float64).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from uiface_ray.paper.interval_sampling import sample_with_interval
from uiface_ray.model.config import ModelConfig
from uiface_ray.model.unet import build_model
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.sample.loop import run_sampler
from uiface_ray.train.grid import conditional_latents, sample_grid

torch.set_num_threads(1)
STEPS = 10  # timesteps 900, 800, ..., 0
EMBEDDING_DIM = 16


def tiny_model(dtype: torch.dtype):
    cfg = ModelConfig.tiny(embedding_dim=EMBEDDING_DIM, image_size=8, num_tokens=4)
    return build_model(cfg, seed=0).to(dtype=dtype)


def embeddings(n: int) -> torch.Tensor:
    return torch.randn(n, EMBEDDING_DIM, generator=torch.Generator().manual_seed(5))


def old_to_uint8(images: torch.Tensor) -> np.ndarray:
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def old_ddim_sample(unet, tokens, noise, scheduler_config, num_inference_steps):
    """train/grid.py's loop before issue 14."""
    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    sample = noise
    for t in scheduler.timesteps:
        model_output = unet(sample, t, encoder_hidden_states=tokens).sample
        sample = scheduler.step(model_output, t, sample).prev_sample
    return sample


@torch.no_grad()
def old_sample_grid(model, embeddings, num_seeds, num_inference_steps, seed, references, batch_size):
    """train/grid.py's sample_grid before issue 14 (on CPU)."""
    rows = embeddings.shape[0] + 1
    c, h, w = model.latent_shape()
    noises = [
        torch.randn((c, h, w), generator=torch.Generator().manual_seed(seed * 1000 + j)) for j in range(num_seeds)
    ]
    noise = torch.stack(noises * rows)
    encoder = model.context_encoder
    tokens = torch.cat([encoder(embeddings), encoder.empty_tokens(1)])
    tokens = tokens.repeat_interleave(num_seeds, dim=0)
    images = []
    for start in range(0, noise.shape[0], batch_size):
        part = slice(start, start + batch_size)
        latents = old_ddim_sample(model.unet, tokens[part], noise[part], model.scheduler_config, num_inference_steps)
        images.append(old_to_uint8(model.decode_latents(latents)))
    tiles = np.concatenate(images).reshape(rows, num_seeds, *images[0].shape[1:])
    refs = np.zeros((rows, 1, *tiles.shape[2:]), dtype=np.uint8)
    refs[: len(references), 0] = references
    tiles = np.concatenate([refs, tiles], axis=1)
    r, k, s1, s2, _ = tiles.shape
    return tiles.transpose(0, 2, 1, 3, 4).reshape(r * s1, k * s2, 3)


def old_interval_latents(model, embeddings, seeds, interval, num_inference_steps, guidance_scale):
    """paper/interval_sampling.py's loop before issue 14, returning z_0."""
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    unet, dtype = model.unet, model.unet.dtype
    scheduler.set_timesteps(num_inference_steps)
    with torch.inference_mode():
        enc = model.context_encoder
        emb = torch.nn.functional.normalize(embeddings.float(), dim=1)
        context = enc(emb.to(enc.proj_in.weight.dtype)).to(dtype)
        empty = enc.empty_tokens(len(seeds)).to(dtype)
        noise = [torch.randn(model.latent_shape(), generator=torch.Generator().manual_seed(s)) for s in seeds]
        latents = torch.stack(noise).float() * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            if interval[0] <= int(t) < interval[1]:
                both = unet(
                    torch.cat([latents, latents]).to(dtype),
                    t,
                    encoder_hidden_states=torch.cat([empty, context]),
                    return_dict=False,
                )[0].float()
                eps_empty, eps_cond = both.chunk(2)
                eps = (guidance_scale + 1.0) * eps_cond - guidance_scale * eps_empty
            else:
                eps = unet(latents.to(dtype), t, encoder_hidden_states=empty, return_dict=False)[0].float()
            latents = scheduler.step(eps, t, latents, eta=0.0).prev_sample
    return latents


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_grid_rows_are_the_old_plain_conditional_ddim(dtype):
    model = tiny_model(dtype)
    seeds = [3, 4, 3]
    with torch.no_grad():
        tokens = torch.cat([model.context_encoder(embeddings(2)), model.context_encoder.empty_tokens(1)])  # (3, N, D)
    noise = torch.stack(
        [torch.randn(model.latent_shape(), generator=torch.Generator().manual_seed(s)) for s in seeds]
    ).to(dtype)
    want = old_ddim_sample(model.unet, tokens, noise, model.scheduler_config, STEPS)
    got = conditional_latents(model, tokens, seeds, STEPS)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)
    assert not torch.equal(got[0], got[1])  # the identity tokens matter


def test_sample_grid_is_unchanged():
    model = tiny_model(torch.float32)
    emb = embeddings(2)
    references = np.full((2, 8, 8, 3), 200, dtype=np.uint8)
    want = old_sample_grid(model, emb, 2, STEPS, 7, references, batch_size=4)
    got = sample_grid(model, emb, 2, STEPS, 7, references=references, batch_size=4)
    assert got.shape == want.shape == (3 * 8, 3 * 8, 3)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got[:8, 8:16])) > 10  # real samples, not a saturated tile


def _decoded_latents(model, *args) -> torch.Tensor:
    """Run sample_with_interval and catch the z_0 it decodes."""
    caught = []
    model.decode_latents = lambda z: caught.append(z.clone()) or z
    sample_with_interval(model, *args)
    del model.decode_latents
    return caught[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("interval", [(300, 700), (0, 500), (600, 1000), (0, 1000)])
def test_interval_study_is_its_old_loop(dtype, interval):
    model = tiny_model(dtype)
    emb, seeds = embeddings(3), [11, 12, 13]
    want = old_interval_latents(model, emb, seeds, interval, STEPS, 1.5)
    got = _decoded_latents(model, emb, seeds, interval, STEPS, 1.5)
    if dtype == torch.float32:
        assert torch.equal(got, want)
    else:  # the old loop rounded the latents to float32 between steps
        torch.testing.assert_close(got.float(), want, rtol=0, atol=1e-4)  # ~1e-5 seen


def test_interval_uses_the_identity_only_inside_it():
    model = tiny_model(torch.float64)
    context = model.context_encoder(embeddings(2)).detach()
    empty = model.context_encoder.empty_tokens(2).detach()
    cfg = SamplerConfig(mode="two_stage_fixed", t0=700, guidance_scale=1.5, num_inference_steps=STEPS)

    def run(guided_from, c=context):
        gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        return run_sampler(
            model.unet,
            DDIMScheduler.from_config(model.scheduler_config),
            c,
            empty,
            gens,
            cfg,
            model.latent_shape(),
            guided_from=guided_from,
        )

    inside = run(300)
    # guided at 600, 500, 400, 300: one c_e pass at each of the 10 steps, one conditional pass at those 4
    assert inside.unet_evaluations.tolist() == [14, 14]
    assert inside.unet_calls == STEPS
    below = run(0)  # eq. 4: guided at every t < 700
    assert below.unet_evaluations.tolist() == [17, 17]
    assert not torch.equal(inside.latents, below.latents)
    # c_e below the interval: the same as running those steps with the identity replaced by c_e
    assert not torch.equal(inside.latents, run(300, c=empty).latents)


def test_guided_from_needs_a_fixed_boundary():
    model = tiny_model(torch.float32)
    context = model.context_encoder(embeddings(1)).detach()
    empty = model.context_encoder.empty_tokens(1).detach()
    gens = [torch.Generator().manual_seed(0)]
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    with pytest.raises(ValueError, match="guided_from=300 needs a fixed stage boundary"):
        run_sampler(
            model.unet,
            scheduler,
            context,
            empty,
            gens,
            SamplerConfig(mode="uiface"),
            model.latent_shape(),
            guided_from=300,
        )
    with pytest.raises(ValueError, match="guided_from must be a non-negative int"):
        run_sampler(
            model.unet,
            scheduler,
            context,
            empty,
            gens,
            SamplerConfig(mode="two_stage_fixed"),
            model.latent_shape(),
            guided_from=-1,
        )
