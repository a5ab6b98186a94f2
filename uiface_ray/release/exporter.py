"""A release-family model folder -> the files the official release's own code loads.

The release (Tencent/TFace ``generation/uiface``) samples with ``sample.py``: it builds its
``ConditionalUNet`` from ``configs/model/*.yaml``, reads a diffusion checkpoint (keys ``eps_model.*``
plus the schedule buffers of its DDPM wrapper) and the VQ-f4 halves
``first_stage_encoder_state_dict.pt`` / ``first_stage_decoder_state_dict.pt`` (LDM key names, loaded
strictly into an encoder/decoder built from ``models/autoencoder/first_stage_config.yaml``).
:func:`export_release` writes exactly those, through :func:`release_state_dict` and
:func:`release_vq_state_dicts`, plus ``unet_config.yaml`` (the model config in the release's field
names) and ``export.json`` (what was written, and whether the release's VQ code, which hard-codes a
3-channel, 8192-entry codebook, can load the autoencoder as is).

Only what the release can represent is exported: the release UNet family, eps prediction on the
linear schedule 1e-4..0.02 over T=1000, and (latent space) unscaled latents (scale 1.0), since the
release feeds the VQ encoder's output to the UNet as it is.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import torch
import yaml
from diffusers import VQModel

from uiface_ray.config import StorageConfig
from uiface_ray.errors import InputError
from uiface_ray.model.bundle import UIFaceModel, load_model
from uiface_ray.release.config import ReleaseExportConfig
from uiface_ray.model.context import ProjectedContextEncoder
from uiface_ray.release.checkpoint import release_state_dict, release_vq_state_dicts
from uiface_ray.release.unet import OfficialUNet
from uiface_ray.storage.fs import join, write_bytes_atomic

__all__ = ["ExportedRelease", "ReleaseExportError", "export_release", "release_unet_config", "write_release_files"]

CHECKPOINT = "ema_averaged_model_{step}.ckpt"  # our bundles hold the EMA weights
VQ_ENCODER = "first_stage_encoder_state_dict.pt"
VQ_DECODER = "first_stage_decoder_state_dict.pt"
RELEASE_VQ = {"embed_dim": 3, "n_embed": 8192}  # hard-coded in the release's models/autoencoder/vqgan.py
RELEASE_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}


class ReleaseExportError(InputError, ValueError):
    """The model cannot be written in the release's format; the message says which setting."""


@dataclass
class ExportedRelease:
    output: str
    files: list[str]
    vq_release_compatible: bool | None  # None: pixel space, no autoencoder


def _check(model: UIFaceModel, url: str) -> None:
    if not isinstance(model.unet, OfficialUNet) or not isinstance(model.context_encoder, ProjectedContextEncoder):
        raise ReleaseExportError(
            f"model {url}: a {type(model.unet).__name__} model; only model.unet=release models have the "
            "release's layout (train with model.unet: release)"
        )
    sched = model.scheduler_config
    wrong = {k: sched.get(k) for k, v in RELEASE_SCHEDULE.items() if sched.get(k) != v}
    if sched.get("prediction_type", "epsilon") != "epsilon":
        wrong["prediction_type"] = sched.get("prediction_type")
    if wrong:
        raise ReleaseExportError(
            f"model {url}: schedule {wrong} differs from the release's (linear 1e-4..0.02, T=1000, epsilon)"
        )
    if model.autoencoder is not None and model.latent_scaling_factor != 1.0:
        raise ReleaseExportError(
            f"model {url}: latent_scaling_factor {model.latent_scaling_factor} != 1.0; the release feeds the "
            "unscaled VQ latents to its UNet (train with model.latent_scaling_factor: 1.0)"
        )


def release_unet_config(model: UIFaceModel) -> dict:
    """The model's ``configs/model/*.yaml`` in the release's field names (its ConditionalUNet arguments)."""
    c = model.unet.config
    return {
        "_target_": "models.diffusion.unet.ConditionalUNet",
        "input_channels": int(c.in_channels),
        "initial_channels": int(c.base_channels),
        "channel_multipliers": [int(m) for m in c.channel_multipliers],
        "is_attention": [bool(a) for a in c.attention_levels],
        "attention_heads": -1,
        "attention_head_channels": int(c.head_channels),
        "n_blocks_per_resolution": int(c.blocks_per_resolution),
        "condition_type": "CA",
        "is_context_conditional": True,
        "n_context_classes": 0,
        "context_input_channels": int(model.context_encoder.embedding_dim),
        "context_channels": int(model.context_encoder.cross_attention_dim),
        "learn_empty_context": True,
        "context_dropout_probability": 0.0,  # training-only settings; sampling does not use them
        "unconditioned_probability": 0.0,
    }


def _vq_ddconfig(vq: VQModel) -> tuple[dict, bool]:
    """(the LDM ``ddconfig`` this VQModel corresponds to, whether the release's VQ code loads it)."""
    channels = [int(c) for c in vq.config.block_out_channels]
    ddconfig = {
        "ch": channels[0],
        "ch_mult": [c // channels[0] for c in channels],
        "num_res_blocks": int(vq.config.layers_per_block),
        "z_channels": int(vq.config.latent_channels),
        "embed_dim": int(vq.config.vq_embed_dim or vq.config.latent_channels),
        "n_embed": int(vq.config.num_vq_embeddings),
    }
    compatible = (
        ddconfig["embed_dim"] == RELEASE_VQ["embed_dim"]
        and ddconfig["n_embed"] == RELEASE_VQ["n_embed"]
        and int(vq.config.norm_num_groups) == 32
        and all(c % channels[0] == 0 for c in channels)
    )
    return ddconfig, compatible


def _torch_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buffer)
    return buffer.getvalue()


def write_release_files(model: UIFaceModel, output: str, step: int, storage: StorageConfig | None = None):
    """Write the release's files of ``model`` under ``output``; ``export.json`` last."""
    _check(model, output)
    sched = model.scheduler_config
    state = release_state_dict(model.unet, model.context_encoder, num_train_timesteps=sched["num_train_timesteps"])
    files = {CHECKPOINT.format(step=step): _torch_bytes(state)}
    files["unet_config.yaml"] = yaml.safe_dump(release_unet_config(model), sort_keys=False).encode()
    record = {"format": "uiface-release-export/1", "step": step, "weights": "ema"}
    record["image_size"] = model.info.get("image_size")
    compatible = None
    if isinstance(model.autoencoder, VQModel):
        encoder, decoder = release_vq_state_dicts(model.autoencoder)
        files[VQ_ENCODER], files[VQ_DECODER] = _torch_bytes(encoder), _torch_bytes(decoder)
        record["vq_ddconfig"], compatible = _vq_ddconfig(model.autoencoder)
    elif model.autoencoder is not None:
        raise ReleaseExportError(
            f"{type(model.autoencoder).__name__} autoencoder: the release's first stage is a VQ model (VQModel)"
        )
    record["vq_release_compatible"] = compatible
    for name, data in files.items():
        write_bytes_atomic(join(output, name), data, storage)
    record["files"] = sorted(files)
    write_bytes_atomic(join(output, "export.json"), json.dumps(record, indent=2).encode(), storage)
    return ExportedRelease(output, sorted(files) + ["export.json"], compatible)


def _step_of(url: str) -> int:
    """The step of a training checkpoint's model (``.../checkpoints/step-00000040/model``), else 0."""
    found = re.search(r"step-(\d+)/model/?$", url)
    return int(found.group(1)) if found else 0


def export_release(cfg: ReleaseExportConfig) -> ExportedRelease:
    """Load ``cfg.model`` and write its release files to ``cfg.output``."""
    model = load_model(cfg.model, storage=cfg.storage)
    _check(model, cfg.model)
    step = cfg.step if cfg.step is not None else _step_of(cfg.model)
    return write_release_files(model, cfg.output, step, cfg.storage)
