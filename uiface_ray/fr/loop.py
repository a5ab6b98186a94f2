"""The FR training loop, one home for both runners: Ray Train workers and a single process.

:func:`run_fr_training` takes one worker's decoded images and a
:class:`~uiface_ray.optim.context.WorkerContext` saying how this worker talks to the others
(nothing, for one process).  Each step:

  1. progress ``p`` of the budget (steps or minutes, rank 0's clock on every rank); stop at 1;
  2. learning rate (:func:`uiface_ray.optim.lr.lr_at`) and margin (:mod:`uiface_ray.fr.schedule`);
  3. augment, forward, backward, update (:func:`uiface_ray.fr.model.train_step`);
  4. the weight average (rank 0; :class:`uiface_ray.optim.ema.EMA` over the backbone's state dict
     with decay warm-up), the loss averaged over ranks;
  5. on rank 0: verification every ``verify_every`` steps, a progress line every ``log_every_s``;
  6. a checkpoint every ``checkpoint_every`` steps and at the end (``ctx.report``).

:func:`fit_fr_local` is the single-process runner; :func:`write_fr_outputs` writes what both
runners leave in ``out``: ``backbone.pth``, ``train_log.json`` and ``verify_curve.png``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from uiface_ray.fr.model import (
    FRModel,
    backbone_state,
    build_optimizer,
    epoch_batches,
    state_bytes,
    train_step,
)
from uiface_ray.fr.augment import AugmentSpec
from uiface_ray.fr.schedule import margin_at, progress
from uiface_ray.evaluate.pairs_verifier import CurvePoint, PairsVerifier
from uiface_ray.evaluate.config import FRTrainConfig, FRTrainParams
from uiface_ray.errors import InputError
from uiface_ray.optim.context import WorkerContext
from uiface_ray.optim.ema import EMA
from uiface_ray.optim.lr import lr_at
from uiface_ray.sample.seeds import step_seed
from uiface_ray.precision import decide, detect

BACKBONE_FILE = "backbone.pth"
LOG_FILE = "train_log.json"
CURVE_FILE = "verify_curve.png"


@dataclass(frozen=True)
class FRPlan:
    steps_per_epoch: int
    total_steps: int  # from epochs and max_steps; max_minutes may stop earlier
    input_size: int
    num_classes: int


@dataclass
class FRRun:
    backbone: dict  # insightface-layout state dict (the weight average when ema_decay > 0)
    steps: int
    losses: list  # mean loss over ranks at each step
    curve: list  # CurvePoint
    elapsed_s: float
    images_per_s: float


@dataclass(frozen=True)
class FRTrainResult:
    backbone_url: str
    log_url: str
    losses: list
    steps: int
    num_classes: int
    num_images: int
    curve: list = field(default_factory=list)  # CurvePoint
    elapsed_s: float = 0.0


class FRInputError(InputError, ValueError):
    """An FR training input (the data, the verification pairs) is missing or unusable."""


def check_inputs(cfg: FRTrainConfig) -> None:
    """Fail at the driver, naming the field, before any worker starts."""
    from uiface_ray import storage

    if cfg.verify_pairs and not cfg.verify_images:
        raise FRInputError(f"verify_pairs {cfg.verify_pairs} needs verify_images (the folder of its images)")
    for name in ("verify_pairs", "verify_images"):
        url = getattr(cfg, name)
        if url and not storage.exists(url, cfg.storage):
            raise FRInputError(f"{name}: {url} not found")


def input_size_for(cfg: FRTrainParams, image_side: int) -> int:
    """The configured input side, else the data's side rounded down to a multiple of 16 (16..112)."""
    if cfg.input_size:
        return cfg.input_size
    return max(16, min(112, image_side // 16 * 16))


def plan_training(
    num_rows: int,
    num_classes: int,
    image_side: int,
    cfg: FRTrainParams,
    world: int,
    source: str = "the dataset",
    max_steps: int | None = None,
) -> FRPlan:
    """Steps per epoch and in all, the same on every worker; a dataset too small is a one-line error."""
    per_worker = num_rows // world
    if per_worker < cfg.batch_size:
        raise ValueError(
            f"{source}: {num_rows} images give {per_worker} per worker, fewer than "
            f"batch_size={cfg.batch_size}; lower batch_size or num_workers"
        )
    if num_classes < 2:
        raise ValueError(f"{source}: FR training needs at least 2 identities, found {num_classes}")
    spe = per_worker // cfg.batch_size
    total = spe * cfg.epochs
    limit = max_steps or cfg.max_steps
    return FRPlan(spe, min(total, limit) if limit else total, input_size_for(cfg, image_side), num_classes)


def _build(cfg: FRTrainParams, plan: FRPlan, seed: int) -> FRModel:
    with torch.random.fork_rng(devices=[]):  # build_iresnet draws from the default generator
        torch.manual_seed(seed)
        model = FRModel(
            cfg.depth,
            plan.num_classes,
            cfg.embedding_dim,
            cfg.head_s,
            cfg.head_m,
            torch.Generator().manual_seed(seed),
            cfg.head,
            plan.input_size,
            cfg.width,
        )
    return model.to(memory_format=torch.channels_last)  # NHWC convolutions: ~15% more images/s on a CPU


def run_fr_training(
    cfg: FRTrainParams,
    images: np.ndarray,
    labels: np.ndarray,
    plan: FRPlan,
    ctx: WorkerContext,
    seed: int = 0,
    verifier: PairsVerifier | None = None,
    checkpoint_every: int = 0,
    log_every_s: float = 30.0,
) -> FRRun:
    """Train on this worker's ``images`` (n, s, s, 3) uint8 at ``plan.input_size`` (see the module docstring)."""
    precision = decide(detect(), torch.device(ctx.device).type, cfg.dtype)
    if ctx.rank == 0:
        ctx.log(f"[train_fr] precision: {precision.describe()}")
    scaler = torch.amp.GradScaler("cuda") if precision.grad_scaler else None
    model = ctx.wrap(_build(cfg, plan, seed))
    inner = getattr(model, "module", model)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay)
    lead = ctx.rank == 0
    ema = EMA(inner.backbone, cfg.ema_decay, warmup=True, buffers=True) if cfg.ema_decay > 0 and lead else None
    scored = copy.deepcopy(inner.backbone) if ema is not None and verifier is not None else None
    step, elapsed0, losses, curve = 0, 0.0, [], []
    if ctx.restored:
        r = ctx.restored
        inner.load_state_dict(r["model"])
        optimizer.load_state_dict(r["optimizer"])
        if ema is not None and r.get("ema"):
            ema.load_state_dict(r["ema"])
        step, elapsed0, losses = int(r["step"]), float(r["elapsed_s"]), list(r["losses"])
        curve = [CurvePoint(**c) for c in r.get("curve", [])]
    aug = AugmentSpec(0.5 if cfg.flip else 0.0, cfg.augment_p, cfg.augment_p, cfg.augment_p, cfg.augment_shift)
    spe = plan.steps_per_epoch
    lr_warm, m_warm = round(cfg.lr_warmup_epochs * spe), round(cfg.margin_warmup_epochs * spe)
    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    every = checkpoint_every or spe
    start, first_step, last_log = time.monotonic() - elapsed0, step, time.monotonic()
    batches, batches_epoch = [], -1

    def elapsed() -> float:
        return time.monotonic() - start

    def backbone_now() -> dict:
        return ema.averaged() if ema is not None else backbone_state(model)

    def verify() -> None:
        if scored is not None:
            ema.copy_to(scored)
        res = verifier.score(scored if scored is not None else inner.backbone, ctx.device)
        curve.append(CurvePoint(step, round(elapsed(), 2), res.accuracy, res.accuracy_std))
        ctx.log(
            f"[train_fr] step {step}: {verifier.name} {100 * res.accuracy:.2f}% "
            f"+- {100 * res.accuracy_std:.2f} ({elapsed() / 60:.1f} min)"
        )

    def state() -> dict:
        return {
            "model": inner.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed_s": elapsed(),
            "losses": list(losses),
            "curve": [asdict(c) for c in curve],
            "ema": ema.state_dict() if ema is not None else None,
            "backbone": backbone_now(),
        }

    def save() -> None:
        ctx.report({"step": step, "loss": losses[-1] if losses else None}, state() if lead else None)

    saved_at = step
    while True:
        p = progress(step, plan.total_steps, ctx.from_rank0(elapsed()), budget_s)  # 1. the same on every rank
        if p >= 1.0:
            break
        epoch, k = divmod(step, spe)
        if epoch != batches_epoch:
            batches, batches_epoch = (
                epoch_batches(np.arange(len(labels)), cfg.batch_size, spe, seed + ctx.rank, epoch),
                epoch,
            )
        lr = lr_at(step, p, cfg.lr, cfg.lr_schedule, lr_warm, cfg.lr_milestones, cfg.lr_gamma)  # 2.
        inner.head.m = margin_at(step, cfg.head_m, m_warm)
        gen = torch.Generator().manual_seed(step_seed(seed, step, ctx.rank))
        res = train_step(
            model,
            optimizer,
            images[batches[k]],
            labels[batches[k]],
            lr,
            gen,
            aug,
            ctx.device,
            precision.autocast,
            scaler,
        )  # 3.
        if ema is not None:  # 4.
            ema.update(inner.backbone)
        losses.append(ctx.mean(res.loss))
        step += 1
        if lead and verifier is not None and cfg.verify_every and step % cfg.verify_every == 0:  # 5.
            verify()
        if lead and time.monotonic() - last_log >= log_every_s:
            last_log = time.monotonic()
            rate = (step - first_step) * cfg.batch_size * ctx.world_size / max(elapsed() - elapsed0, 1e-9)
            p = progress(step, plan.total_steps, elapsed(), budget_s)
            ctx.log(
                f"[train_fr] step {step}/{plan.total_steps} epoch {step / spe:.1f} loss {losses[-1]:.3f} "
                f"lr {lr:.4g} m {inner.head.m:.3f} {rate:.0f} img/s, {elapsed() / 60:.1f} min, "
                f"about {elapsed() * (1 - p) / max(p, 1e-9) / 60:.1f} min left"
            )
        if step % every == 0:  # 6.
            save()
            saved_at = step
    if lead and verifier is not None and (not curve or curve[-1].step != step):
        verify()
    if saved_at != step or not losses:
        save()
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError("FR training produced a non-finite loss")
    rate = (step - first_step) * cfg.batch_size * ctx.world_size / max(elapsed() - elapsed0, 1e-9)
    return FRRun(backbone_now() if lead else {}, step, losses, curve, elapsed(), rate)


def write_fr_outputs(cfg: FRTrainConfig, run: FRRun, plan: FRPlan, num_images: int) -> FRTrainResult:
    """backbone.pth, train_log.json and (with a curve) verify_curve.png in ``cfg.out``, each atomically."""
    from uiface_ray import storage
    from uiface_ray.evaluate.plots import line_plot, png_bytes
    from uiface_ray.evaluate.report import public_config

    backbone_url, log_url = storage.join(cfg.out, BACKBONE_FILE), storage.join(cfg.out, LOG_FILE)
    log = {
        "config": public_config(cfg),
        "steps": run.steps,
        "planned_steps": plan.total_steps,
        "elapsed_s": round(run.elapsed_s, 2),
        "images_per_s": round(run.images_per_s, 1),
        "losses": run.losses,
        "verify_curve": [asdict(c) for c in run.curve],
        "num_classes": plan.num_classes,
        "num_images": num_images,
        "encoder": {
            "kind": "iresnet",
            "path": backbone_url,
            "depth": cfg.depth,
            "embedding_dim": cfg.embedding_dim,
            "input_size": plan.input_size,
            "width": cfg.width,
            "weights": "weight average" if cfg.ema_decay > 0 else "last step",
        },
    }
    storage.write_bytes_atomic(backbone_url, state_bytes(run.backbone), cfg.storage)
    if run.curve:
        minutes = [c.elapsed_s / 60 for c in run.curve]
        img = line_plot(
            {cfg.verify_pairs.rsplit("/", 1)[-1]: (minutes, [100 * c.accuracy for c in run.curve])},
            "verification accuracy during training",
            "minutes",
            "accuracy (%)",
        )
        storage.write_bytes_atomic(storage.join(cfg.out, CURVE_FILE), png_bytes(img), cfg.storage)
    storage.write_bytes_atomic(log_url, json.dumps(log, indent=2).encode(), cfg.storage)
    return FRTrainResult(
        backbone_url, log_url, run.losses, run.steps, plan.num_classes, num_images, run.curve, run.elapsed_s
    )


def fit_fr_local(cfg: FRTrainConfig, faces=None) -> FRTrainResult:
    """Train in this process (no Ray) on ``cfg.data`` (or on ``faces``, a FaceSet) and write the outputs."""
    from uiface_ray import storage
    from uiface_ray.evaluate.faceset import decode_images, read_faceset

    check_inputs(cfg)
    faces = faces if faces is not None else read_faceset(cfg.data, cfg.storage)
    storage.fs.check_writable(cfg.out, cfg.storage)
    side = decode_images(faces.images[:1]).shape[1]
    plan = plan_training(len(faces.labels), faces.num_classes, side, cfg, 1, cfg.data)
    verifier = (
        PairsVerifier.load(cfg.verify_pairs, cfg.verify_images, plan.input_size, cfg.verify_max_pairs, cfg.storage)
        if cfg.verify_pairs
        else None
    )
    images = decode_images(faces.images, plan.input_size)  # (N, n, n, 3)
    device = "cuda" if cfg.use_gpu else "cpu"
    ctx = WorkerContext(
        device=torch.device(device), wrap=lambda m: m.to(device), log=lambda line: print(line, flush=True)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        run = run_fr_training(cfg, images, faces.labels, plan, ctx, cfg.seed, verifier, cfg.checkpoint_every)
    finally:
        torch.set_num_threads(threads)  # the caller's setting (an ablation runs this in its driver)
    return write_fr_outputs(cfg, run, plan, len(faces.labels))
