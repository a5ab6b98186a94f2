"""Train a small diffusers ``VQModel`` or ``AutoencoderKL`` on the face table (pure torch).

No pretrained LDM autoencoder can be downloaded here, so latent diffusion is made testable end to
end with a small one trained on the faces: reconstruction loss (L1 + MSE) plus the VQ commitment
loss (``VQModel``) or a small KL term (``AutoencoderKL``).  At the end the latent scale is set to
1 / std of the training latents (``scaling_factor`` in the saved config), as LDM does.

The faces stream (:mod:`uiface_ray.data.stream`, the core diffusion and FR training read with): a
seeded shuffle of the table's pieces and rows, decoded in a background thread a few batches ahead
of the step, so memory does not grow with the table.  The PSNR is measured on the first 256 faces
of that stream.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, VQModel

from uiface_ray.config import StorageConfig
from uiface_ray.model.autoencoder import Autoencoder
from uiface_ray.storage.fs import join, upload_dir, write_bytes_atomic
from uiface_ray.train.config import AutoencoderTrainConfig
from uiface_ray.data.stream import make_plan
from uiface_ray.data.stream_read import DecodeImages, ReadSpec, iter_local
from uiface_ray.data.stream_source import open_source, parquet_files

__all__ = ["AutoencoderResult", "AutoencoderTrainConfig", "build_autoencoder", "train_autoencoder"]


@dataclass
class AutoencoderResult:
    output: str
    steps: int
    first_loss: float
    final_loss: float
    psnr_db: float  # reconstruction PSNR on the first 256 images, in [-1, 1] range
    scaling_factor: float
    wall_s: float


def build_autoencoder(cfg: AutoencoderTrainConfig) -> Autoencoder:
    levels = len(cfg.block_out_channels)
    common = dict(
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        latent_channels=cfg.latent_channels,
        sample_size=cfg.image_size,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.kind == "vq":
            return VQModel(num_vq_embeddings=cfg.num_vq_embeddings, **common)
        return AutoencoderKL(**common)


def _loss(model: Autoencoder, x: torch.Tensor, cfg: AutoencoderTrainConfig, generator: torch.Generator):
    if isinstance(model, VQModel):
        out = model(x)
        recon, extra = out.sample, out.commit_loss.mean()
    else:
        posterior = model.encode(x).latent_dist
        recon = model.decode(posterior.sample(generator=generator)).sample
        extra = cfg.kl_weight * posterior.kl().mean()
    return F.l1_loss(recon, x) + F.mse_loss(recon, x) + extra


@torch.no_grad()
def _evaluate(model: Autoencoder, x: torch.Tensor) -> tuple[float, float]:
    """(PSNR in dB of the reconstructions, std of the pre-quantisation latents)."""
    model.eval()
    if isinstance(model, VQModel):
        latents = model.encode(x).latents
        recon = model.decode(latents).sample
    else:
        latents = model.encode(x).latent_dist.mode()
        recon = model.decode(latents).sample
    mse = F.mse_loss(recon.clamp(-1, 1), x).item()
    model.train()
    return 10 * np.log10(4.0 / max(mse, 1e-12)), float(latents.std())


def _save(model: Autoencoder, url: str, storage: StorageConfig | None) -> None:
    """Weights first, config.json (what loaders look for) last."""
    with tempfile.TemporaryDirectory(prefix="uiface-ae-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        config = Path(tmp) / "config.json"
        data = config.read_bytes()
        config.unlink()
        upload_dir(tmp, url, storage)
        write_bytes_atomic(join(url, "config.json"), data, storage)


def face_batches(cfg: AutoencoderTrainConfig, batch_size: int, steps: int) -> Iterator[torch.Tensor]:
    """``steps`` batches of the table's faces, (b, 3, S, S) in [-1, 1], streamed in the seeded order."""
    source = open_source(cfg.table, parquet_files(cfg.table, cfg.storage), "label", cfg.storage, cfg.stream.piece_rows)
    plan = make_plan(source, cfg.seed, cfg.stream.shuffle_window, min(batch_size, source.num_rows), 1)
    spec = ReadSpec.of(plan, source, cfg.storage)
    decode = DecodeImages(cfg.image_size, spec)
    with contextlib.closing(iter_local(spec, 0, 0, steps, decode, cfg.stream.prefetch_batches)) as stream:
        for batch in stream:
            yield torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (b, 3, S, S)


def train_autoencoder(cfg: AutoencoderTrainConfig, log: Callable[[str], None] = print) -> AutoencoderResult:
    start = time.time()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device = torch.device("cuda" if cfg.use_gpu else "cpu")
    model = build_autoencoder(cfg).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    losses = []
    for step, x in enumerate(face_batches(cfg, cfg.batch_size, cfg.steps), start=1):
        x = x.to(device)
        x = torch.where(torch.from_numpy(rng.random(len(x)) < 0.5).to(device)[:, None, None, None], x.flip(-1), x)
        loss = _loss(model, x, cfg, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if step % cfg.log_every == 0 or step == cfg.steps:
            log(f"[autoencoder] step {step}/{cfg.steps} loss {np.mean(losses[-cfg.log_every :]):.4f}")
    psnr, latent_std = _evaluate(model, next(face_batches(cfg, 256, 1)).to(device))
    scaling = 1.0 / max(latent_std, 1e-6)
    model.register_to_config(scaling_factor=scaling)
    _save(model.cpu(), cfg.output, cfg.storage)
    log(f"[autoencoder] PSNR {psnr:.2f} dB, latent scale {scaling:.4f} -> {cfg.output}")
    window = max(1, min(cfg.log_every, len(losses) // 4))
    return AutoencoderResult(
        cfg.output,
        cfg.steps,
        float(np.mean(losses[:window])),
        float(np.mean(losses[-window:])),
        psnr,
        scaling,
        time.time() - start,
    )
