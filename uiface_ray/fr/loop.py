"""The FR training loop, one home for both runners: Ray Train workers and a single process.

:func:`run_fr_training` is a plain loop over a :class:`FRState` (model, optimiser, weight average,
step, losses, curve), fed by this worker's stream of batches (``batches(start_step)``: the
Ray Data shard on Ray Train, :func:`uiface_ray.data.stream_read.iter_local` in one process), with a
:class:`~uiface_ray.optim.context.WorkerContext` saying how this worker talks to the others.  Each
step:

  1. progress ``p`` of the budget (steps or minutes, rank 0's clock on every rank); stop at 1;
  2. learning rate (:func:`uiface_ray.optim.lr.lr_at`) and margin (:mod:`uiface_ray.fr.schedule`);
  3. the next batch (decoded and augmented by the loaders: :class:`uiface_ray.fr.data.FRTransform`);
     forward, backward, update (:func:`uiface_ray.fr.model.train_step`);
  4. the weight average (rank 0; :class:`uiface_ray.optim.ema.EMA` over the backbone's state dict
     with decay warm-up), the loss averaged over ranks;
  5. the callbacks (:mod:`uiface_ray.fr.callbacks`): verification every ``verify_every`` steps and a
     progress line every ``log_every_s`` on rank 0, a checkpoint every ``checkpoint_every`` steps.

:func:`fit_fr_local` is the single-process runner; :func:`write_fr_outputs` writes what both
runners leave in ``out``: ``backbone.pth``, ``train_log.json`` and ``verify_curve.png``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from uiface_ray.data.stream import make_plan
from uiface_ray.data.stream_read import DecodeImages, ReadSpec, iter_local
from uiface_ray.errors import InputError
from uiface_ray.evaluate.pairs_verifier import CurvePoint, PairsVerifier
from uiface_ray.fr.augment import AugmentSpec
from uiface_ray.fr.callbacks import CallbackCheckpoint, CallbackLogging, CallbackVerification
from uiface_ray.fr.config import FRTrainConfig, FRTrainParams
from uiface_ray.fr.data import FRTransform, first_image_side, fr_source
from uiface_ray.fr.model import FRModel, backbone_state, build_optimizer, state_bytes, train_step
from uiface_ray.fr.schedule import margin_at, progress
from uiface_ray.optim.context import WorkerContext
from uiface_ray.optim.ema import EMA
from uiface_ray.optim.lr import lr_at
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


@dataclass(frozen=True)
class FRData:
    """The dataset as this run streams it: what a loader needs, the training plan, the image count, and
    what the loaders do to a batch (decode, augment)."""

    spec: ReadSpec
    plan: FRPlan
    num_images: int
    augment: AugmentSpec
    seed: int

    def transform(self) -> FRTransform:
        return FRTransform(DecodeImages(self.plan.input_size, self.spec), self.augment, self.seed)

    def local_batches(self, cfg: FRTrainConfig, rank: int) -> "Batches":
        """This process's stream from a step (no Ray), read, decoded and augmented a few batches ahead."""
        return lambda start: iter_local(
            self.spec, rank, start, self.plan.total_steps, self.transform(), cfg.stream.prefetch_batches
        )


def augment_spec(cfg: FRTrainParams) -> AugmentSpec:
    return AugmentSpec(0.5 if cfg.flip else 0.0, cfg.augment_p, cfg.augment_p, cfg.augment_p, cfg.augment_shift)


def prepare_data(cfg: FRTrainConfig, url: str, world: int) -> FRData:
    """The driver's look at the data (footers, labels, one image: never the images) and the plans."""
    source = fr_source(url, cfg.storage, cfg.stream.piece_rows)
    if source.num_rows == 0:
        raise FRInputError(f"{url}: the dataset holds no images")
    side = first_image_side(source, cfg.storage)
    plan = plan_training(source.num_rows, source.num_classes, side, cfg, world, url)
    stream = make_plan(source, cfg.seed, cfg.stream.shuffle_window, cfg.batch_size, world)
    assert stream.steps_per_epoch == plan.steps_per_epoch
    return FRData(ReadSpec.of(stream, source, cfg.storage), plan, source.num_rows, augment_spec(cfg), cfg.seed)


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


@dataclass
class FRState:
    """Everything a step changes, and what a checkpoint keeps of it."""

    model: nn.Module  # as trained (DDP-wrapped on Ray Train)
    optimizer: torch.optim.Optimizer
    ema: EMA | None  # rank 0's weight average of the backbone (ema_decay > 0)
    step: int = 0
    losses: list = field(default_factory=list)  # mean loss over ranks at each step
    curve: list = field(default_factory=list)  # CurvePoint
    elapsed0: float = 0.0  # training time before this run (a restored checkpoint's)
    first_step: int = 0  # this run's first step
    started: float = field(default_factory=time.monotonic)

    @property
    def inner(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    def elapsed(self) -> float:
        return self.elapsed0 + time.monotonic() - self.started

    def images_per_s(self, batch_size: int, world: int) -> float:
        return (self.step - self.first_step) * batch_size * world / max(self.elapsed() - self.elapsed0, 1e-9)

    def backbone(self) -> dict:
        return self.ema.averaged() if self.ema is not None else backbone_state(self.model)

    def advance(self, loss: float) -> None:
        if self.ema is not None:
            self.ema.update(self.inner.backbone)
        self.losses.append(loss)
        self.step += 1

    def checkpoint(self) -> dict:
        return {
            "model": self.inner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed(),
            "losses": list(self.losses),
            "curve": [asdict(c) for c in self.curve],
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "backbone": self.backbone(),
        }

    def restore(self, r: dict) -> None:
        self.inner.load_state_dict(r["model"])
        self.optimizer.load_state_dict(r["optimizer"])
        if self.ema is not None and r.get("ema"):
            self.ema.load_state_dict(r["ema"])
        self.step = self.first_step = int(r["step"])
        self.elapsed0, self.losses = float(r["elapsed_s"]), list(r["losses"])
        self.curve = [CurvePoint(**c) for c in r.get("curve", [])]
        self.started = time.monotonic()


def new_state(cfg: FRTrainParams, plan: FRPlan, ctx: WorkerContext, seed: int) -> FRState:
    """The model built from ``seed`` (wrapped by ``ctx``), its optimiser and weight average; restored
    from ``ctx.restored`` when there is a checkpoint."""
    model = ctx.wrap(_build(cfg, plan, seed))
    inner = getattr(model, "module", model)
    ema = EMA(inner.backbone, cfg.ema_decay, warmup=True, buffers=True) if cfg.ema_decay > 0 and ctx.rank == 0 else None
    state = FRState(model, build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay), ema)
    if ctx.restored:
        state.restore(ctx.restored)
    return state


Batches = Callable[[int], Iterator[dict]]  # start step -> this worker's batches from there ("image", "label")


def run_fr_training(
    cfg: FRTrainParams,
    batches: Batches,
    plan: FRPlan,
    ctx: WorkerContext,
    seed: int = 0,
    verifier: PairsVerifier | None = None,
    checkpoint_every: int = 0,
    log_every_s: float = 30.0,
) -> FRRun:
    """Train on this worker's stream of batches (``image``: float (b, 3, s, s) in [0, 1] at
    ``plan.input_size``, augmented, or uint8 (b, s, s, 3); see the module docstring)."""
    precision = decide(detect(), torch.device(ctx.device).type, cfg.dtype)
    if ctx.rank == 0:
        ctx.log(f"[train_fr] precision: {precision.describe()}")
    scaler = torch.amp.GradScaler("cuda") if precision.grad_scaler else None
    state = new_state(cfg, plan, ctx, seed)
    verification = CallbackVerification(verifier, cfg.verify_every, ctx, state)
    logging = CallbackLogging(ctx, plan.total_steps, plan.steps_per_epoch, cfg.batch_size, log_every_s)
    checkpoints = CallbackCheckpoint(ctx, checkpoint_every or plan.steps_per_epoch, state)
    lr_warm, m_warm = (round(w * plan.steps_per_epoch) for w in (cfg.lr_warmup_epochs, cfg.margin_warmup_epochs))
    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    with contextlib.closing(batches(state.step)) as stream:
        while (p := progress(state.step, plan.total_steps, ctx.from_rank0(state.elapsed()), budget_s)) < 1.0:  # 1.
            lr = lr_at(state.step, p, cfg.lr, cfg.lr_schedule, lr_warm, cfg.lr_milestones, cfg.lr_gamma)  # 2.
            state.inner.head.m = margin_at(state.step, cfg.head_m, m_warm)
            batch = next(stream, None)  # 3.
            if batch is None:
                raise RuntimeError(f"the data stream ended before step {state.step + 1} of {plan.total_steps}")
            res = train_step(
                state.model,
                state.optimizer,
                batch["image"],  # (b, 3, s, s) in [0, 1], augmented by the loaders
                batch["label"],
                lr,
                None,
                None,
                ctx.device,
                precision.autocast,
                scaler,
            )
            state.advance(ctx.mean(res.loss))  # 4.
            verification(state)  # 5.
            logging(state, lr, budget_s)
            checkpoints(state)
    verification.final(state)
    checkpoints.final(state)
    if not all(math.isfinite(x) for x in state.losses):
        raise FloatingPointError("FR training produced a non-finite loss")
    rate = state.images_per_s(cfg.batch_size, ctx.world_size)
    return FRRun(
        state.backbone() if ctx.rank == 0 else {}, state.step, state.losses, state.curve, state.elapsed(), rate
    )


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


@contextlib.contextmanager
def _faces_as_table(faces) -> Iterator[str]:
    """An in-memory FaceSet as a face table at a ``memory://`` URL (this process only), removed after."""
    from uiface_ray import storage

    url = f"memory://uiface-fr-{uuid.uuid4().hex}/faces.parquet"
    storage.write_table(url, {"image": list(faces.images), "label": [int(v) for v in faces.labels]})
    try:
        yield url
    finally:
        storage.remove(url.rsplit("/", 1)[0], recursive=True)


def fit_fr_local(cfg: FRTrainConfig, faces=None) -> FRTrainResult:
    """Train in this process (no Ray) on ``cfg.data`` (or on ``faces``, an in-memory FaceSet) and write
    the outputs; the batches stream as on Ray Train (:func:`uiface_ray.data.stream_read.iter_local`)."""
    check_inputs(cfg)
    with _faces_as_table(faces) if faces is not None else contextlib.nullcontext(cfg.data) as url:
        data = prepare_data(cfg, url, 1)
        verifier = (
            PairsVerifier.load(
                cfg.verify_pairs, cfg.verify_images, data.plan.input_size, cfg.verify_max_pairs, cfg.storage
            )
            if cfg.verify_pairs
            else None
        )
        device = "cuda" if cfg.use_gpu else "cpu"
        ctx = WorkerContext(
            device=torch.device(device), wrap=lambda m: m.to(device), log=lambda line: print(line, flush=True)
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.torch_threads)
        try:
            run = run_fr_training(
                cfg, data.local_batches(cfg, 0), data.plan, ctx, cfg.seed, verifier, cfg.checkpoint_every
            )
        finally:
            torch.set_num_threads(threads)  # the caller's setting (an ablation runs this in its driver)
    return write_fr_outputs(cfg, run, data.plan, data.num_images)
