"""The released UIFace model as a uiface-ray bundle: build it, import the authors' files into it.

``import_official(cfg)`` reads the release's diffusion checkpoint (EMA or non-EMA), its VQ-f4
encoder and decoder state dicts (local paths or ``s3://``), fills :class:`OfficialUNet`, the
projected context encoder and a diffusers ``VQModel`` strictly, and saves one model folder with
:func:`~uiface_ray.model.bundle.save_model`.  ``info["official"]`` records the provenance: each
source file's name and sha256, which weights, and the release's sampling settings.  Nothing is
written unless every file was read and every key matched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import torch

from uiface_ray.config import StorageConfig
from uiface_ray.release.config import OfficialImportConfig
from uiface_ray.model.bundle import UIFaceModel, save_model
from uiface_ray.model.context import ProjectedContextEncoder
from uiface_ray.release.checkpoint import (
    SCHEDULE_KEYS,
    CheckpointError,
    load_release_checkpoint,
    load_release_vq,
    official_vq_model,
    read_state_dict,
    release_state_dict,
    strip_prefixes,
)
from uiface_ray.release.unet import OfficialUNet, official_unet_kwargs
from uiface_ray.storage.fs import StorageError, check_writable, is_remote, read_bytes
from uiface_ray.storage.fs import exists as storage_exists

__all__ = ["RELEASE_SAMPLING", "build_official_model", "import_official"]

#: The release's sampling settings (``configs/sample_ddim_config.yaml``, ``diffusion/ddpm.py``).
RELEASE_SAMPLING = {
    "ddim_steps": 50,
    "eta": 0.0,
    "cfg_scale": 1.0,
    "MSE_th": 0.006,
    "step_th": 500,
    "injection_blend": 0.5,
    "map_resolution": 32,
    "image_size": 128,
    "saved_size": 112,
    "resize": "bilinear",
    "use_non_ema": True,
}
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "clip_sample": False,
}


def build_official_model(
    architecture: str = "release", seed: int = 0, encoder_info: dict | None = None, autoencoder: bool = True
) -> UIFaceModel:
    """The release's generator with random weights: 'release' (full size, 128x128 via VQ-f4) or 'tiny'."""
    tiny = architecture == "tiny"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kwargs = official_unet_kwargs(tiny=tiny)
        image_size = 32 if tiny else 128
        vq = None
        if autoencoder:
            vq = official_vq_model(image_size, (32, 32, 64), 64) if tiny else official_vq_model(image_size)
            vq.requires_grad_(False).eval()
            kwargs["sample_size"] = image_size // 4
        else:
            image_size = kwargs["sample_size"]
        unet = OfficialUNet(**kwargs)
        context_encoder = ProjectedContextEncoder(512, kwargs["cross_attention_dim"])
    encoder = encoder_info or {"kind": "iresnet", "dim": 512, "fingerprint": ""}
    info = {
        "encoder": encoder,
        "image_size": image_size,
        "space": "latent" if autoencoder else "pixel",
        "latent_scaling_factor": 1.0,
        "architecture": f"official-{architecture}",
    }
    return UIFaceModel(
        unet=unet, context_encoder=context_encoder, scheduler_config=dict(SCHEDULER), autoencoder=vq, info=info
    )


def _read(url: str, storage: StorageConfig | None) -> tuple[bytes | str, str]:
    """(local path or the bytes of a remote file, sha256): a local checkpoint is hashed in chunks
    and loaded from its path, so an 800 MB file is not held twice in memory."""
    if not is_remote(url):
        path = _local_path(url)
        if not path.is_file():
            raise CheckpointError(f"{url}: no such file")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return str(path), digest.hexdigest()
    try:
        data = read_bytes(url, storage)
    except StorageError as exc:
        raise CheckpointError(f"{url}: cannot be read ({exc})") from None
    return data, hashlib.sha256(data).hexdigest()


def _local_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url)


def _check_files_and_output(cfg: OfficialImportConfig, storage: StorageConfig | None) -> None:
    """Before any converting: every input file exists and the output can be written (one line each)."""
    for field in ("checkpoint", "vq_encoder", "vq_decoder"):
        url = getattr(cfg, field)
        try:
            found = storage_exists(url, storage) if is_remote(url) else _local_path(url).is_file()
        except StorageError as exc:
            raise CheckpointError(f"{field} {url}: cannot be read ({exc})") from None
        if not found:
            raise CheckpointError(
                f"{field} {url}: no such file; check the name (the release's files are listed in docs/OFFICIAL.md)"
            )
    if is_remote(cfg.output):
        try:
            check_writable(cfg.output, storage)
        except StorageError as exc:
            raise CheckpointError(
                f"output {cfg.output} is not writable ({exc}); create the bucket or fix the URL"
            ) from None
        return
    parent = _local_path(cfg.output).absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointError(f"output {cfg.output} is not writable ({parent} is not a writable folder)")


def _architecture_hint(state: dict, chosen: str) -> str:
    """'; this looks like the tiny architecture ...' when the file's shapes are those of the other one."""
    other = "tiny" if chosen == "release" else "release"
    kwargs = official_unet_kwargs(tiny=other == "tiny")
    with torch.device("meta"):  # names and shapes only
        unet, context = OfficialUNet(**kwargs), ProjectedContextEncoder(512, kwargs["cross_attention_dim"])
    expected = {k: tuple(v.shape) for k, v in release_state_dict(unet, context, prefix="", schedule=False).items()}
    found = {strip_prefixes(k): tuple(v.shape) for k, v in state.items() if strip_prefixes(k) not in SCHEDULE_KEYS}
    found = {k: s[:-1] if k in expected and len(s) == len(expected[k]) + 1 else s for k, s in found.items()}
    if found != expected:
        return ""
    what = "the tiny test architecture" if other == "tiny" else "the release's full-size architecture"
    return f"; this looks like {what} (cross-attention {kwargs['cross_attention_dim']}-d): pass --architecture={other}"


def _weights_kind(cfg: OfficialImportConfig) -> str:
    name = PurePosixPath(cfg.checkpoint).name
    by_name = "ema" if name.startswith("ema_") else "non_ema" if name.startswith("model") else None
    if cfg.weights == "auto":
        if by_name is None:
            raise CheckpointError(
                f"{cfg.checkpoint}: cannot tell EMA from non-EMA weights by the name; "
                "set weights=ema or weights=non_ema"
            )
        return by_name
    if by_name is not None and by_name != cfg.weights:
        raise CheckpointError(f"{cfg.checkpoint}: the file name says {by_name} weights but weights={cfg.weights}")
    return cfg.weights


def import_official(cfg: OfficialImportConfig, storage: StorageConfig | None = None) -> UIFaceModel:
    """Read, map and check the release's three files, then save the bundle to ``cfg.output``."""
    storage = storage if storage is not None else cfg.storage
    _check_files_and_output(cfg, storage)
    weights = _weights_kind(cfg)
    model = build_official_model(
        cfg.architecture, encoder_info={"kind": cfg.encoder_kind, "dim": 512, "fingerprint": cfg.encoder_fingerprint}
    )
    sources = {}
    data, digest = _read(cfg.checkpoint, storage)
    sources["checkpoint"] = {"file": PurePosixPath(cfg.checkpoint).name, "sha256": digest}
    state = read_state_dict(data, cfg.checkpoint)
    del data
    try:
        load_release_checkpoint(state, cfg.checkpoint, model.unet, model.context_encoder, model.scheduler_config)
    except CheckpointError as exc:
        hint = _architecture_hint(state, cfg.architecture)
        if not hint:
            raise
        raise CheckpointError(f"{exc}{hint}") from None
    del state
    halves = []
    for role, url in (("vq_encoder", cfg.vq_encoder), ("vq_decoder", cfg.vq_decoder)):
        data, digest = _read(url, storage)
        sources[role] = {"file": PurePosixPath(url).name, "sha256": digest}
        halves.append(read_state_dict(data, url))
    load_release_vq(model.autoencoder, halves[0], cfg.vq_encoder, halves[1], cfg.vq_decoder)
    model.info["official"] = {"sources": sources, "weights": weights, "release_sampling": RELEASE_SAMPLING}
    save_model(model, cfg.output, storage)
    return model
