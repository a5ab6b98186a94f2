"""Python API without Ray: load a saved generator and sample identity images.

    sampler = UIFaceSampler.from_pretrained("s3://bucket/model", device="cuda")  # dtype="auto"
    batch = sampler.sample(embeddings, seeds=[image_seed(job, identity, k) for k in range(8)])
    batch.images  # (B, H, W, 3) uint8

Identity embeddings are L2-normalised here (as the official release does on load); every image
gets its own CPU ``torch.Generator``, so its initial noise is the same on CPU and CUDA.
``dtype="auto"`` (the default) samples in what the device runs fastest
(:mod:`uiface_ray.precision`: bfloat16 + channels_last on a bf16 CPU or an sm_80+ GPU, float16 on
sm_70/75, else float32); ``sampler.precision`` says what was chosen and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from uiface_ray.model.bundle import UIFaceModel, load_model
from uiface_ray.precision import Precision, resolve
from uiface_ray.sample.config import SamplerConfig, SamplerMode
from uiface_ray.sample.loop import SamplerOutput, run_sampler
from uiface_ray.sample.seeds import image_seed

__all__ = ["GeneratedBatch", "UIFaceSampler", "image_seed", "to_uint8"]


@dataclass
class GeneratedBatch:
    """B generated images and how each was made."""

    images: np.ndarray  # (B, H, W, 3) uint8
    seeds: list[int]
    t0: np.ndarray  # (B,) int64: stage 2 ran at t < t0
    d_t: np.ndarray  # (B, S) float32, NaN where not computed
    timesteps: np.ndarray  # (S,) int64
    unet_evaluations: np.ndarray  # (B,) int64 UNet sample-evaluations per image
    unet_calls: int
    mode: SamplerMode
    finite: np.ndarray  # (B,) bool: latents and decoded image free of NaN/inf (else the uint8 image is junk)


def to_uint8(images: torch.Tensor, size: int | None = None) -> np.ndarray:
    """Images in [-1, 1], (B, 3, H, W) -> (B, H, W, 3) uint8, optionally resized to ``size`` x ``size``.

    The resize follows the official release's order: clamp, map to [0, 1], bilinear resize (no
    antialias, align_corners False), then ``floor(255 y + 0.5)`` as torchvision's ``save_image``.
    This is deliberately not ``data.images.resize_images`` (the one filter for face images): it resizes
    the float tensor before rounding, which is what makes the release's saved images reproducible.
    """
    if size is None:
        scaled = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return scaled.permute(0, 2, 3, 1).cpu().numpy()
    unit = (images.float().clamp(-1.0, 1.0) + 1.0) / 2.0  # (B, 3, H, W) in [0, 1]
    unit = F.interpolate(unit, size=(size, size), mode="bilinear", align_corners=False)  # (B, 3, size, size)
    scaled = unit.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


class UIFaceSampler:
    """Samples images from a :class:`UIFaceModel` with one :class:`SamplerConfig`."""

    def __init__(self, model: UIFaceModel, config: SamplerConfig | None = None) -> None:
        self.model = model
        self.config = SamplerConfig() if config is None else config
        if not isinstance(self.config, SamplerConfig):
            raise TypeError(f"config must be a SamplerConfig, got {type(self.config).__name__}")
        self.scheduler = DDIMScheduler.from_config(model.scheduler_config)
        self.precision: Precision | None = None  # set by from_pretrained

    @classmethod
    def from_pretrained(
        cls,
        url: str,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "auto",
        config: SamplerConfig | None = None,
        storage=None,
    ) -> "UIFaceSampler":
        """Load a model folder written by ``uiface_ray.model.bundle.save_model`` (local or s3://).

        ``dtype``: "auto" (:func:`uiface_ray.precision.resolve` for ``device``), or "float32",
        "float16", "bfloat16" (or the torch dtype).  Reduced precision also puts the UNet and the
        autoencoder in channels_last; float32 stays contiguous, bit for bit as before."""
        precision = resolve(device, dtype)
        where = device if precision.device == torch.device(device).type else precision.device  # keeps "cuda:1"
        model = load_model(url, device=where, dtype=precision.dtype, storage=storage)
        if precision.channels_last:
            for module in (model.unet, model.autoencoder):
                if module is not None:
                    torch.nn.Module.to(module, memory_format=torch.channels_last)
        sampler = cls(model, config)
        sampler.precision = precision
        return sampler

    @property
    def device(self) -> torch.device:
        return self.model.unet.device

    def _embeddings(self, contexts) -> torch.Tensor:
        """Check and L2-normalise identity embeddings: (B, E) float32 on the model's device."""
        x = contexts if torch.is_tensor(contexts) else torch.as_tensor(np.asarray(contexts))
        dim = self.model.embedding_dim
        if x.ndim != 2 or x.shape[1] != dim or x.shape[0] == 0:
            raise ValueError(f"contexts must be identity embeddings of shape (B, {dim}), got {tuple(x.shape)}")
        x = x.to(torch.float32)
        finite = torch.isfinite(x).all(dim=1)
        if not finite.all():
            raise ValueError(f"contexts rows {(~finite).nonzero().flatten().tolist()} contain NaN or inf")
        norms = x.norm(dim=1)
        if not (norms > 0).all():
            raise ValueError(f"contexts rows {(norms <= 0).nonzero().flatten().tolist()} have zero norm")
        return (x / norms[:, None]).to(self.device)

    def sample(self, contexts, seeds: Sequence[int]) -> GeneratedBatch:
        """One image per row of ``contexts`` (B, E), image i from ``seeds[i]``."""
        embeddings = self._embeddings(contexts)
        seeds = [int(s) for s in seeds]
        if len(seeds) != embeddings.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for {embeddings.shape[0]} contexts; need one seed per context")
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        model, dtype = self.model, self.model.unet.dtype
        with torch.inference_mode():
            encoder = model.context_encoder
            context_tokens = encoder(embeddings.to(encoder.proj_in.weight.dtype)).to(dtype)
            empty_tokens = encoder.empty_tokens(len(seeds)).to(dtype)
        out = run_sampler(
            model.unet,
            self.scheduler,
            context_tokens=context_tokens,
            empty_tokens=empty_tokens,
            generators=generators,
            cfg=self.config,
            latent_shape=model.latent_shape(),
        )
        return self._finish(out, seeds)

    def _finish(self, out: SamplerOutput, seeds: list[int]) -> GeneratedBatch:
        model = self.model
        with torch.inference_mode():
            decoder_dtype = (
                model.unet.dtype if model.autoencoder is None else next(model.autoencoder.parameters()).dtype
            )
            images = model.decode_latents(out.latents.to(decoder_dtype))
            finite = torch.isfinite(out.latents).flatten(1).all(1) & torch.isfinite(images).flatten(1).all(1)  # (B,)
        return GeneratedBatch(
            images=to_uint8(images, self.config.output_size),
            seeds=seeds,
            t0=out.t0.cpu().numpy(),
            d_t=out.d_t.cpu().numpy(),
            timesteps=out.timesteps.cpu().numpy(),
            unet_evaluations=out.unet_evaluations.cpu().numpy(),
            unet_calls=out.unet_calls,
            mode=self.config.mode,
            finite=finite.cpu().numpy(),
        )
