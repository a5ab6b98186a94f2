"""The training loop of one worker (pure torch): resume, steps, metrics, checkpoints.

Ray-agnostic: the runtime layer hands in a :class:`~uiface_ray.optim.context.WorkerContext` (rank,
device, DDP wrapper, collectives, reporter: the context FR training takes too), the run's small
:class:`~uiface_ray.train.stream.TrainData` and the worker's stream of batches from a step (Ray Data
on Ray Train); a single process can run it with the defaults, as the local runner and the
benchmarks do (the core's in-process iterator).  The loop takes one batch per step from the stream:
pixels (decoded ahead of the step) or cached latents (``train/latent_cache.py``), with embeddings.
Everything random in a step comes from a generator seeded by (seed, step, rank), and the stream
from a step is a pure function of (seed, step, rank, workers), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch
from diffusers import DDPMScheduler
from torch import nn

from uiface_ray.optim.context import WorkerContext
from uiface_ray.optim.ema import EMA
from uiface_ray.optim.lr import make_lr_scheduler
from uiface_ray.precision import Precision, decide, detect
from uiface_ray.progress import Progress, hms
from uiface_ray.model.bundle import UIFaceModel
from uiface_ray.model.unet import build_model
from uiface_ray.sample.seeds import step_seed
from uiface_ray.train.checkpoint import load_train_state, read_latest, save_checkpoint
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.data import FaceData, decode_images, load_face_data
from uiface_ray.train.grid import grid_png, sample_grid
from uiface_ray.train.latent_cache import check_compatible
from uiface_ray.train.objective import DiffusionModule, apply_flip, cached_x0, diffusion_loss, draw_step_noise
from uiface_ray.train.stream import TrainData, local_batches

__all__ = ["CachedLatents", "SimulatedCrash", "TrainState", "run_training"]

BatchStream = Callable[[int], Iterator[dict]]  # a worker's local batches from a step on


class SimulatedCrash(RuntimeError):
    """Raised after ``fail_at_step`` (tests of crash and resume)."""


@dataclass
class TrainState:
    model: UIFaceModel
    module: DiffusionModule
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: EMA
    step: int = 0
    metrics: list[dict] = field(default_factory=list)
    precision: Precision | None = None  # autocast dtype and memory format (None: float32)
    scaler: torch.amp.GradScaler | None = None  # float16 on CUDA only


@dataclass
class CachedLatents:
    """A batch's cached autoencoder output (``train/latent_cache.py``): x0 is taken from it at the step."""

    latents: torch.Tensor  # (b, K, D): the image (k = 0) and its mirror (k = 1)
    kind: str  # 'vq' | 'kl'
    shape: tuple[int, int, int]  # (C, h, w)


def build_state(cfg: TrainConfig, data: TrainData | FaceData, device: torch.device) -> TrainState:
    model = build_model(cfg.model, data.encoder_info, seed=cfg.seed, storage=cfg.storage)
    model.info["training_data"] = data.training_record()  # provenance, carried into the dataset card
    model.to(device)
    module = DiffusionModule(model.unet, model.context_encoder)
    o = cfg.optim
    opt_cls = torch.optim.AdamW if o.weight_decay else torch.optim.Adam
    optimizer = opt_cls(module.parameters(), lr=o.lr, betas=tuple(o.adam_betas), weight_decay=o.weight_decay)
    lr_scheduler = make_lr_scheduler(optimizer, cfg.max_steps, o.warmup_steps, o.lr_schedule, o.min_lr_ratio)
    ema = EMA(module, cfg.diffusion.ema_decay, cfg.diffusion.ema_warmup)
    return TrainState(model, module, optimizer, lr_scheduler, ema)


def restore(state: TrainState, cfg: TrainConfig) -> bool:
    """Load the newest checkpoint of ``cfg.output`` into ``state``; False for a fresh run."""
    latest = read_latest(cfg.output, cfg.storage)
    if latest is None:
        return False
    saved = load_train_state(latest["checkpoint"], cfg.storage)
    state.module.load_state_dict(saved["module"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.lr_scheduler.load_state_dict(saved["lr_scheduler"])
    state.ema.load_state_dict(saved["ema"])
    state.ema.to(next(state.module.parameters()).device)
    state.step = int(saved["step"])
    state.metrics = list(saved["metrics"])
    return True


def train_state_dict(state: TrainState, cfg: TrainConfig) -> dict:
    return {
        "step": state.step,
        "module": {k: v.detach().cpu() for k, v in state.module.state_dict().items()},
        "optimizer": state.optimizer.state_dict(),
        "lr_scheduler": state.lr_scheduler.state_dict(),
        "ema": state.ema.state_dict(),
        "metrics": state.metrics,
        "config": cfg.model_dump(mode="json", exclude={"storage"}),  # no credentials in checkpoints
    }


def ema_model(state: TrainState) -> UIFaceModel:
    """A copy of the model holding the EMA weights (what is saved and sampled)."""
    module = copy.deepcopy(state.module)
    state.ema.copy_to(module)
    nn.Module.to(module, memory_format=torch.contiguous_format)  # as saved and loaded, whatever trained it
    m = state.model
    return UIFaceModel(
        unet=module.unet,
        context_encoder=module.context_encoder,
        scheduler_config=m.scheduler_config,
        autoencoder=m.autoencoder,
        info=m.info,
    )


def train_step(
    state: TrainState,
    wrapped: nn.Module,
    scheduler: DDPMScheduler,
    images: torch.Tensor | CachedLatents,
    embeddings: torch.Tensor,
    cfg: TrainConfig,
    ctx: WorkerContext,
) -> float:
    """One optimiser step on ``images`` ((b, 3, S, S) in [-1, 1], encoded here in latent space) or on a
    batch's cached latents."""
    generator = torch.Generator().manual_seed(step_seed(cfg.seed, state.step, ctx.rank))
    shape = (embeddings.shape[0], *state.model.latent_shape())
    draws = draw_step_noise(
        shape, scheduler.config.num_train_timesteps, cfg.diffusion.p_uncond, generator, cfg.data.hflip
    ).to(ctx.device)
    precision = state.precision
    autocast = precision is not None and precision.autocast is not None
    with torch.autocast(ctx.device.type, dtype=precision.autocast if autocast else torch.bfloat16, enabled=autocast):
        if isinstance(images, CachedLatents):
            x0 = cached_x0(images.latents, draws, images.kind, images.shape, state.model.latent_scaling_factor)
        else:
            with torch.no_grad():
                x0 = state.model.encode_images(apply_flip(images, draws.flip))
        loss = diffusion_loss(wrapped, scheduler, x0, embeddings, draws, cfg.diffusion)
    state.optimizer.zero_grad(set_to_none=True)
    scaler = state.scaler
    (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is not None:
        scaler.unscale_(state.optimizer)  # clip the true gradients
    if cfg.optim.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(state.module.parameters(), cfg.optim.max_grad_norm)
    if scaler is None:
        state.optimizer.step()
    else:
        scaler.step(state.optimizer)
        scaler.update()
    state.lr_scheduler.step()
    state.ema.update(state.module)
    state.step += 1
    return float(loss.detach())


_AUTOCAST = {"auto": "auto", "no": "float32", "bf16": "bfloat16", "fp16": "float16"}


def training_precision(mixed_precision: str, device: torch.device) -> Precision:
    """The :class:`Precision` of ``TrainConfig.mixed_precision`` on ``device`` (its autocast dtype).
    Contiguous on a CPU: channels_last measured slower there for the demo generator's training
    (bf16 1.30x float32, bf16 + channels_last 1.14x; docs/PERFORMANCE.md)."""
    precision = decide(detect(), device.type, _AUTOCAST[mixed_precision])
    return replace(precision, channels_last=False) if precision.device == "cpu" else precision


def use_precision(state: TrainState, precision: Precision) -> None:
    """Put the trained modules in ``precision``'s memory format; a gradient scaler for CUDA float16.
    The weights stay float32 (autocast casts per op), so a checkpoint is the same in every precision."""
    state.precision = precision
    if precision.channels_last:
        nn.Module.to(state.model.unet, memory_format=torch.channels_last)
        if state.model.autoencoder is not None:
            nn.Module.to(state.model.autoencoder, memory_format=torch.channels_last)
    if precision.grad_scaler:
        state.scaler = torch.amp.GradScaler("cuda")


@dataclass
class _Meter:
    """Loss and throughput since the last log line; the pace of this session's steps (elapsed, ETA)
    is a :class:`uiface_ray.progress.Progress`."""

    session_start: float
    session_first_step: int
    last_time: float
    loss_sum: float = 0.0
    count: int = 0

    def line(self, state: TrainState, cfg: TrainConfig, ctx: WorkerContext) -> dict:
        steps = Progress(
            cfg.max_steps, state.step, clock=time.time, start=self.session_start, done_before=self.session_first_step
        )
        now = steps.clock()
        loss = ctx.mean(self.loss_sum / max(1, self.count))
        metrics = {
            "step": state.step,
            "loss": loss,
            "lr": state.optimizer.param_groups[0]["lr"],
            "images_per_s": self.count * cfg.batch_size / max(1e-9, now - self.last_time),
            "session_elapsed_s": steps.elapsed,
            "eta_s": steps.eta_s or 0.0,
        }
        self.loss_sum, self.count, self.last_time = 0.0, 0, now
        return metrics


def progress_line(m: dict, max_steps: int) -> str:
    return (
        f"[train] step {m['step']}/{max_steps} loss {m['loss']:.4f} lr {m['lr']:.2e} "
        f"{m['images_per_s']:.1f} img/s elapsed {hms(m['session_elapsed_s'])} eta {hms(m['eta_s'])}"
    )


def write_checkpoint(state: TrainState, cfg: TrainConfig, data: TrainData, ctx: WorkerContext) -> str:
    model = ema_model(state)
    png = None
    g = cfg.grid
    if g.num_identities:
        emb = torch.tensor(data.grid_embeddings)  # (k, E); a copy: the array came read-only through ray.put
        grid = sample_grid(model, emb, g.num_seeds, g.num_inference_steps, g.seed, ctx.device, data.grid_images)
        png = grid_png(grid, scale=max(1, 64 // cfg.model.image_size))
    record = {
        "model_config": cfg.model.model_dump(mode="json"),
        "encoder": data.encoder_info,
        "max_steps": cfg.max_steps,
        "metrics": state.metrics[-1] if state.metrics else None,
    }
    url = save_checkpoint(
        cfg.output,
        state.step,
        model,
        train_state_dict(state, cfg),
        record,
        state.metrics,
        png,
        cfg.keep_checkpoints,
        cfg.storage,
    )
    ctx.log(f"[train] checkpoint step {state.step} -> {url}")
    return url


def load_training_data(cfg: TrainConfig) -> tuple[FaceData, np.ndarray]:
    """The whole selected table decoded in memory: for the analysis benchmarks, not the training path."""
    d = cfg.data
    data = load_face_data(
        d.table,
        cfg.model.embedding_dim,
        d.min_images_per_identity,
        d.max_identities,
        with_images=True,
        storage=cfg.storage,
    )
    images = decode_images(data.encoded, cfg.model.image_size)  # (N, S, S, 3) uint8
    data.encoded = None
    return data, images


def prepare_local(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainData:
    """The driver's work in this process (the local runner): the scan, the latent cache, the stream."""
    from uiface_ray.train.latent_cache import build_in_process
    from uiface_ray.train.stream import read_spec, scan_table

    data = scan_table(cfg)
    cache = build_in_process(cfg, log) if cfg.model.space == "latent" else None
    return read_spec(cfg, data, 1, cache)


def to_device(batch: dict, data: TrainData, device: torch.device) -> tuple[torch.Tensor | CachedLatents, torch.Tensor]:
    """A stream batch -> (pixels (b, 3, S, S) in [-1, 1] or the cached latents, embeddings (b, E))."""
    embeddings = torch.from_numpy(np.ascontiguousarray(batch["embedding"])).to(device)
    if data.latents is not None:
        latents = torch.from_numpy(np.ascontiguousarray(batch["latent"])).to(device)  # (b, K, D)
        return CachedLatents(latents, data.latents.kind, tuple(data.latents.latent_shape)), embeddings
    pixels = torch.from_numpy(np.ascontiguousarray(batch["image"])).permute(0, 3, 1, 2)  # (b, 3, S, S) uint8
    return pixels.to(device).float() / 127.5 - 1.0, embeddings


def run_training(
    cfg: TrainConfig,
    ctx: WorkerContext | None = None,
    data: TrainData | None = None,
    batches: BatchStream | None = None,
) -> TrainState:
    """Train from the newest checkpoint of ``cfg.output`` (or from scratch) to ``cfg.max_steps``, on
    ``batches(step)`` (default: the core's in-process stream of ``data``, scanned here when not given)."""
    ctx = ctx or WorkerContext()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    precision = training_precision(cfg.mixed_precision, ctx.device)
    if ctx.rank == 0:
        ctx.log(f"[train] precision: {precision.describe()}")
    data = data or prepare_local(cfg, ctx.log)
    state = build_state(cfg, data, ctx.device)
    if data.latents is not None:
        check_compatible(data.latents, state.model.latent_shape())
    use_precision(state, precision)
    if restore(state, cfg) and ctx.rank == 0:
        ctx.log(f"[train] resumed {cfg.output} at step {state.step}")
    wrapped = ctx.wrap(state.module)
    scheduler = DDPMScheduler.from_config(state.model.scheduler_config)
    stream = (batches or local_batches(cfg, data, ctx.rank))(state.step)
    with contextlib.closing(stream):
        step_loop(state, wrapped, scheduler, stream, data, cfg, ctx)
    return state


def step_loop(state, wrapped, scheduler, stream: Iterator[dict], data: TrainData, cfg: TrainConfig, ctx) -> None:
    """Steps until ``max_steps`` (or the wall-time stop): one batch of the stream a step."""
    now = time.time()
    meter = _Meter(now, state.step, now)
    while state.step < cfg.max_steps:
        images, embeddings = to_device(next(stream), data, ctx.device)
        meter.loss_sum += train_step(state, wrapped, scheduler, images, embeddings, cfg, ctx)
        meter.count += 1
        last = state.step == cfg.max_steps
        if state.step % cfg.log_every == 0 or last:
            metrics = meter.line(state, cfg, ctx)
            state.metrics.append(metrics)
            ctx.report(metrics)
            if ctx.rank == 0:
                ctx.log(progress_line(metrics, cfg.max_steps))
            if cfg.stop_after_minutes is not None:
                over = time.time() - meter.session_start > 60 * cfg.stop_after_minutes
                last = last or ctx.mean(float(over)) > 0  # every rank stops at the same step
        if (state.step % cfg.checkpoint_every == 0 or last) and ctx.rank == 0:
            write_checkpoint(state, cfg, data, ctx)
        if last and state.step < cfg.max_steps:
            if ctx.rank == 0:
                ctx.log(f"[train] stopped at step {state.step} after {cfg.stop_after_minutes} min; rerun to resume")
            break
        if cfg.fail_at_step is not None and state.step == cfg.fail_at_step:
            raise SimulatedCrash(f"simulated crash after step {state.step} (fail_at_step)")
