"""Figure 2 of the paper: the identity context used only inside one timestep interval.

For t in [t_start, t_end) the step is guided by the identity (eq. 4, second case:
``(w + 1) eps(c) - w eps(c_e)``); at every other step the empty context ``c_e`` alone is used.
The sampler core runs it: ``two_stage_fixed`` with t0 = t_end, and ``guided_from`` = t_start
for the c_e steps below the interval; no attention injection.  The intra-class similarity of
the images is then measured under an FR encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler

from uiface_ray.data.images import resize_images
from uiface_ray.sample.api import to_uint8
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.sample.loop import run_sampler
from uiface_ray.sample.seeds import image_seed


def sample_with_interval(
    model,
    embeddings: torch.Tensor,
    seeds: list[int],
    interval: tuple[int, int],
    num_inference_steps: int,
    guidance_scale: float,
) -> np.ndarray:
    """uint8 (B, H, W, 3) images; identity-guided only for timesteps t_start <= t < t_end."""
    cfg = SamplerConfig(
        mode="two_stage_fixed", t0=interval[1], guidance_scale=guidance_scale, num_inference_steps=num_inference_steps
    )
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    unet, dtype = model.unet, model.unet.dtype
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    with torch.inference_mode():
        enc = model.context_encoder
        emb = torch.nn.functional.normalize(embeddings.float(), dim=1).to(unet.device)
        context = enc(emb.to(enc.proj_in.weight.dtype)).to(dtype)  # (B, N, D)
        empty = enc.empty_tokens(len(seeds)).to(dtype)  # (B, N, D)
    out = run_sampler(
        unet,
        scheduler,
        context_tokens=context,
        empty_tokens=empty,
        generators=generators,
        cfg=cfg,
        latent_shape=model.latent_shape(),
        guided_from=interval[0],
    )
    with torch.inference_mode():
        images = model.decode_latents(out.latents.to(dtype))
    return to_uint8(images)


@dataclass(frozen=True)
class IntervalPoint:
    interval: tuple[int, int]
    intra_class_similarity: float  # mean cosine similarity of images of one identity
    std: float


def interval_similarity(
    model,
    embeddings: np.ndarray,
    encoder,
    intervals,
    images_per_identity: int,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
) -> list[IntervalPoint]:
    """For each interval: images of every identity with the same seeds, mean intra-class cosine."""
    n = len(embeddings)
    ids = np.repeat(np.arange(n), images_per_identity)
    seeds = [image_seed(seed, int(i), k) for i in range(n) for k in range(images_per_identity)]
    emb_t = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))[ids]
    out = []
    for lo, hi in intervals:
        imgs = sample_with_interval(
            model,
            emb_t,
            seeds,
            interval=(int(lo), int(hi)),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
        )
        feats = encoder.embed(resize_images(imgs, 112))
        sims = []
        for i in range(n):
            f = feats[ids == i]
            g = f @ f.T
            sims.append(float(g[np.triu_indices(len(f), 1)].mean()))
        out.append(IntervalPoint((int(lo), int(hi)), float(np.mean(sims)), float(np.std(sims))))
    return out
