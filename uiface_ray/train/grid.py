"""The sample grid written with each checkpoint: plain DDIM with the identity context tokens.

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

__all__ = ["ddim_sample", "grid_png", "sample_grid", "to_uint8"]


@torch.no_grad()
def ddim_sample(unet, tokens: torch.Tensor, noise: torch.Tensor, scheduler_config: dict,
                num_inference_steps: int) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from ``noise`` with ``encoder_hidden_states=tokens``."""
    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    sample = noise
    for t in scheduler.timesteps:
        model_output = unet(sample, t, encoder_hidden_states=tokens).sample
        sample = scheduler.step(model_output, t, sample).prev_sample
    return sample


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def sample_grid(model: UIFaceModel, embeddings: torch.Tensor, num_seeds: int, num_inference_steps: int,
                seed: int, device: torch.device | str = "cpu", references: np.ndarray | None = None,
                batch_size: int = 64) -> np.ndarray:
    """A (rows * S, cols * S, 3) uint8 grid; rows = identities + c_e, cols = [reference] + seeds."""
    rows = embeddings.shape[0] + 1
    c, h, w = model.latent_shape()
    noises = [torch.randn((c, h, w), generator=torch.Generator().manual_seed(seed * 1000 + j)) for j in range(num_seeds)]
    noise = torch.stack(noises * rows).to(device)  # (rows * seeds, C, H, W), row-major
    encoder = model.context_encoder
    tokens = torch.cat([encoder(embeddings.to(device)), encoder.empty_tokens(1)])  # (rows, N, D)
    tokens = tokens.repeat_interleave(num_seeds, dim=0)  # (rows * seeds, N, D)
    images = []
    for start in range(0, noise.shape[0], batch_size):
        part = slice(start, start + batch_size)
        latents = ddim_sample(model.unet, tokens[part], noise[part], model.scheduler_config, num_inference_steps)
        images.append(to_uint8(model.decode_latents(latents)))
    tiles = np.concatenate(images).reshape(rows, num_seeds, *images[0].shape[1:])  # (rows, seeds, S, S, 3)
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
