"""Figure 2 of the paper: the identity context used only inside one timestep interval.

For t in [t_start, t_end) the step is guided by the identity (eq. 4, second case:
``(w + 1) eps(c) - w eps(c_e)``); at every other step the empty context ``c_e`` alone is used.
The sampler core has no interval option, so this is a small DDIM (eta 0) loop of its own built
from the core's public pieces (``initial_noise``, ``guide``, the model's context encoder and
decoder); it uses the UNet's default attention (no injection).  The intra-class similarity of
the images is then measured under an FR encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler

from uiface_ray.sample.api import to_uint8
from uiface_ray.sample.loop import initial_noise
from uiface_ray.sample.seeds import image_seed
from uiface_ray.sample.two_stage import guide


def sample_with_interval(model, embeddings: torch.Tensor, seeds: list[int], interval: tuple[int, int],
                         num_inference_steps: int, guidance_scale: float) -> np.ndarray:
    """uint8 (B, H, W, 3) images; identity-guided only for timesteps t_start <= t < t_end."""
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    unet, dtype = model.unet, model.unet.dtype
    device = unet.device
    scheduler.set_timesteps(num_inference_steps, device=device)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    with torch.inference_mode():
        enc = model.context_encoder
        emb = torch.nn.functional.normalize(embeddings.float(), dim=1).to(device)
        context = enc(emb.to(enc.proj_in.weight.dtype)).to(dtype)  # (B, N, D)
        empty = enc.empty_tokens(len(seeds)).to(dtype)  # (B, N, D)
        latents = initial_noise(generators, model.latent_shape(), device).float() * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            if interval[0] <= int(t) < interval[1]:
                both = unet(torch.cat([latents, latents]).to(dtype), t,
                            encoder_hidden_states=torch.cat([empty, context]), return_dict=False)[0].float()
                eps_empty, eps_cond = both.chunk(2)
                eps = guide(eps_empty, eps_cond, guidance_scale)
            else:
                eps = unet(latents.to(dtype), t, encoder_hidden_states=empty, return_dict=False)[0].float()
            latents = scheduler.step(eps, t, latents, eta=0.0).prev_sample
        images = model.decode_latents(latents.to(dtype))
    return to_uint8(images)


@dataclass(frozen=True)
class IntervalPoint:
    interval: tuple[int, int]
    intra_class_similarity: float  # mean cosine similarity of images of one identity
    std: float


def interval_similarity(model, embeddings: np.ndarray, encoder, intervals, images_per_identity: int,
                        seed: int, num_inference_steps: int, guidance_scale: float) -> list[IntervalPoint]:
    """For each interval: images of every identity with the same seeds, mean intra-class cosine."""
    n = len(embeddings)
    ids = np.repeat(np.arange(n), images_per_identity)
    seeds = [image_seed(seed, int(i), k) for i in range(n) for k in range(images_per_identity)]
    emb_t = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))[ids]
    out = []
    for lo, hi in intervals:
        imgs = sample_with_interval(model, emb_t, seeds, (int(lo), int(hi)), num_inference_steps, guidance_scale)
        feats = encoder.embed(_resize(imgs, 112))
        sims = []
        for i in range(n):
            f = feats[ids == i]
            g = f @ f.T
            sims.append(float(g[np.triu_indices(len(f), 1)].mean()))
        out.append(IntervalPoint((int(lo), int(hi)), float(np.mean(sims)), float(np.std(sims))))
    return out


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])
