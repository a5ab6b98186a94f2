"""The sample grid written with each checkpoint: plain conditional DDIM with the identity context tokens,
run by the sampler core (``uiface_ray.sample.loop.run_sampler``, baseline mode at guidance 0).

Rows: the chosen training identities, then one row from the empty context c_e.  Columns: an
optional real reference image, then one column per seed; a column shares its initial noise
across rows, so differences along a column come from the context alone.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image

from uiface_ray.model.bundle import UIFaceModel
from uiface_ray.sample.api import to_uint8
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.sample.loop import run_sampler

__all__ = ["conditional_images", "conditional_latents", "grid_png", "sample_grid"]


def conditional_latents(
    model: UIFaceModel, tokens: torch.Tensor, seeds: list[int], num_inference_steps: int
) -> torch.Tensor:
    """Plain conditional DDIM (eta 0) through the sampler core: every step one pass with
    ``encoder_hidden_states=tokens`` (B, N, D), no guidance; row i starts from the noise of ``seeds[i]``."""
    cfg = SamplerConfig(mode="baseline", guidance_scale=0.0, num_inference_steps=num_inference_steps)
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    empty = model.context_encoder.empty_tokens(tokens.shape[0]).to(tokens)  # (B, N, D), not evaluated at w = 0
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return run_sampler(model.unet, scheduler, tokens, empty, generators, cfg, model.latent_shape()).latents


@torch.no_grad()
def conditional_images(
    model: UIFaceModel, tokens: torch.Tensor, seeds: list[int], num_inference_steps: int, batch_size: int = 64
) -> np.ndarray:
    """(B, S, S, 3) uint8 from :func:`conditional_latents`, ``batch_size`` rows at a time."""
    images = []
    for start in range(0, len(seeds), batch_size):
        part = slice(start, start + batch_size)
        latents = conditional_latents(model, tokens[part], seeds[part], num_inference_steps)
        with torch.inference_mode():
            images.append(to_uint8(model.decode_latents(latents)))
    return np.concatenate(images)


@torch.no_grad()
def sample_grid(
    model: UIFaceModel,
    embeddings: torch.Tensor,
    num_seeds: int,
    num_inference_steps: int,
    seed: int,
    device: torch.device | str = "cpu",
    references: np.ndarray | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """A (rows * S, cols * S, 3) uint8 grid; rows = identities + c_e, cols = [reference] + seeds."""
    rows = embeddings.shape[0] + 1
    encoder = model.context_encoder
    tokens = torch.cat([encoder(embeddings.to(device)), encoder.empty_tokens(1)])  # (rows, N, D)
    tokens = tokens.repeat_interleave(num_seeds, dim=0)  # (rows * seeds, N, D), row-major
    seeds = [seed * 1000 + j for _ in range(rows) for j in range(num_seeds)]  # a column shares its noise
    images = conditional_images(model, tokens, seeds, num_inference_steps, batch_size)
    tiles = images.reshape(rows, num_seeds, *images.shape[1:])  # (rows, seeds, S, S, 3)
    if references is not None:
        refs = np.zeros((rows, 1, *tiles.shape[2:]), dtype=np.uint8)
        refs[: len(references), 0] = references
        tiles = np.concatenate([refs, tiles], axis=1)
    r, k, s1, s2, _ = tiles.shape
    return tiles.transpose(0, 2, 1, 3, 4).reshape(r * s1, k * s2, 3)


def grid_png(grid: np.ndarray, scale: int = 1) -> bytes:
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
