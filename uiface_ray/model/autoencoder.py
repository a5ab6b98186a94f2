"""Autoencoders for latent diffusion: diffusers ``VQModel`` or ``AutoencoderKL``.

The paper runs its diffusion in the 3x32x32 latent space of the LDM VQ-f4 autoencoder. Here an
autoencoder is any diffusers ``VQModel`` / ``AutoencoderKL`` saved with ``save_pretrained`` under
a local or ``s3://`` folder.  Latents seen by the UNet are ``scaling_factor * encoder(x)``;
for ``VQModel`` the diffusion runs on the pre-quantisation latents and ``decode`` quantises, as
in LDM.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, VQModel

from uiface_ray import jsonfile
from uiface_ray.config import StorageConfig
from uiface_ray.storage.fs import StorageError, local_copy

__all__ = [
    "AUTOENCODER_CLASSES",
    "Autoencoder",
    "decode_latents",
    "downscale_factor",
    "encode_latents",
    "load_autoencoder",
]

Autoencoder = VQModel | AutoencoderKL
AUTOENCODER_CLASSES: dict[str, type] = {"VQModel": VQModel, "AutoencoderKL": AutoencoderKL}


def load_autoencoder_dir(
    path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Autoencoder:
    """Load from a local ``save_pretrained`` folder; the class comes from its config.json."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"autoencoder folder {path} has no config.json (expected a diffusers save_pretrained folder)"
        )
    try:
        config = jsonfile.loads(config_file.read_bytes())
    except jsonfile.JSONFileError as exc:
        raise ValueError(f"autoencoder {config_file}: {exc}") from None
    class_name = config.get("_class_name") if isinstance(config, dict) else None
    cls = AUTOENCODER_CLASSES.get(class_name)
    if cls is None:
        raise ValueError(
            f"autoencoder {config_file}: _class_name {class_name!r} is not one of {sorted(AUTOENCODER_CLASSES)}"
        )
    model = cls.from_pretrained(str(path), torch_dtype=dtype, low_cpu_mem_usage=False)
    return model.to(device).eval().requires_grad_(False)


def load_autoencoder(
    url: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    storage: StorageConfig | None = None,
) -> Autoencoder:
    """Load a ``VQModel``/``AutoencoderKL`` from a local path or ``s3://`` URL (frozen, eval mode)."""
    try:
        with local_copy(url, storage) as local:  # a remote copy is removed once the weights are in memory
            return load_autoencoder_dir(local, device, dtype)
    except StorageError as exc:
        raise FileNotFoundError(f"autoencoder not found at {url}: {exc}") from exc


def downscale_factor(autoencoder: Autoencoder) -> int:
    """Spatial reduction of the encoder: 2 ** (number of down blocks - 1)."""
    return 2 ** (len(autoencoder.config.block_out_channels) - 1)


def latent_channels(autoencoder: Autoencoder) -> int:
    return int(autoencoder.config.latent_channels)


def encode_latents(
    autoencoder: Autoencoder, images: torch.Tensor, scaling_factor: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Images in [-1, 1], (B, 3, H, W) -> scaled latents (B, C, H/f, W/f)."""
    if isinstance(autoencoder, VQModel):
        latents = autoencoder.encode(images).latents
    else:
        latents = autoencoder.encode(images).latent_dist.sample(generator=generator)
    return latents * scaling_factor


def decode_latents(autoencoder: Autoencoder, latents: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """Scaled latents -> images in about [-1, 1], (B, 3, H, W)."""
    return autoencoder.decode(latents / scaling_factor).sample
