"""FR training on Ray Train: a TorchTrainer over ``num_workers`` data-parallel workers.

Each worker reads the dataset through the storage layer, keeps its own fixed share of the rows
(a permutation seeded by the job seed, split by rank), decodes it once, and runs the pure step of
``uiface_ray.evaluate.fr_train`` under DDP.  Every worker runs the same number of steps.  Rank 0
reports a Ray Train checkpoint (model, optimizer, step, losses) every epoch or every
``checkpoint_every`` steps; a rerun with the same ``run_name`` and ``ray_storage`` resumes from the
last one.  At the end the driver writes ``backbone.pth`` (insightface state-dict layout) and
``train_log.json`` to ``out`` atomically.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uiface_ray.evaluate.settings import FRTrainConfig

STATE_FILE = "state.pt"
BACKBONE_FILE = "backbone.pth"


@dataclass(frozen=True)
class FRTrainResult:
    backbone_url: str
    log_url: str
    losses: list  # mean loss over workers at each step
    steps: int
    num_classes: int
    num_images: int


def _plan(num_rows: int, cfg: FRTrainConfig) -> tuple[int, int]:
    """(steps per epoch, total steps), the same on every worker."""
    per_worker = num_rows // cfg.num_workers
    if per_worker < cfg.batch_size:
        raise ValueError(f"{cfg.data}: {num_rows} images give {per_worker} per worker, fewer than "
                         f"batch_size={cfg.batch_size}; lower batch_size or num_workers")
    steps_per_epoch = per_worker // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    return steps_per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total


def _save_state(model, optimizer, step: int, losses: list) -> "object":
    import torch
    from ray.train import Checkpoint

    from uiface_ray.evaluate.fr_train import backbone_state

    tmp = tempfile.mkdtemp(prefix="uiface-fr-ckpt-")
    inner = getattr(model, "module", model)
    torch.save({"model": inner.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "losses": list(losses)}, os.path.join(tmp, STATE_FILE))
    torch.save(backbone_state(model), os.path.join(tmp, BACKBONE_FILE))
    return Checkpoint.from_directory(tmp)


def _load_state(model, optimizer) -> tuple[int, list]:
    import ray.train
    import torch

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0, []
    with ckpt.as_directory() as d:
        state = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)
    getattr(model, "module", model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), list(state["losses"])


def _worker_rows(cfg: FRTrainConfig, rank: int, world: int):
    """This worker's fixed share of the rows, decoded: (images (n, 112, 112, 3), labels, classes, plan)."""
    from uiface_ray.evaluate.faceset import decode_images, read_faceset

    faces = read_faceset(cfg.data, cfg.storage)
    plan = _plan(len(faces.labels), cfg)
    perm = np.random.default_rng([cfg.seed, 0x5EED]).permutation(len(faces.labels))
    mine = np.sort(perm[rank::world][: len(faces.labels) // world])
    images = decode_images([faces.images[i] for i in mine], 112)  # (n, 112, 112, 3)
    return images, faces.labels[mine], faces.num_classes, plan


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker body; ``config`` is ``FRTrainConfig.model_dump()``."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from uiface_ray.evaluate import fr_train
    from uiface_ray.evaluate.augment import AugmentSpec

    cfg = FRTrainConfig.model_validate(config)
    torch.set_num_threads(cfg.torch_threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    images, labels, num_classes, (steps_per_epoch, total_steps) = _worker_rows(cfg, rank, world)
    with torch.random.fork_rng(devices=[]):  # build_iresnet draws from the default generator
        torch.manual_seed(cfg.seed)
        model = fr_train.FRModel(cfg.depth, num_classes, cfg.embedding_dim, cfg.arcface_s, cfg.arcface_m,
                                 torch.Generator().manual_seed(cfg.seed))
    model = ray.train.torch.prepare_model(model)  # DDP across the workers
    optimizer = fr_train.build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay)
    step, losses = _load_state(model, optimizer)
    aug = AugmentSpec(0.5 if cfg.flip else 0.0, cfg.augment_p, cfg.augment_p, cfg.augment_p)
    milestones = tuple(int(round(f * total_steps)) for f in cfg.lr_milestones)
    every = cfg.checkpoint_every or steps_per_epoch
    device = ray.train.torch.get_device()
    batches, batches_epoch = [], -1
    while step < total_steps:
        epoch, k = divmod(step, steps_per_epoch)
        if epoch != batches_epoch:
            rows = np.arange(len(labels))
            batches, batches_epoch = fr_train.epoch_batches(rows, cfg.batch_size, steps_per_epoch,
                                                            cfg.seed + rank, epoch), epoch
        gen = torch.Generator().manual_seed(fr_train.step_seed(cfg.seed, rank, step))
        lr = fr_train.lr_at(step, cfg.lr, milestones, cfg.lr_gamma)
        res = fr_train.train_step(model, optimizer, images[batches[k]], labels[batches[k]], lr, gen, aug, device)
        loss = torch.tensor([res.loss])
        if world > 1 and dist.is_initialized():
            dist.all_reduce(loss)  # mean over workers, for the log
        losses.append(float(loss) / world)
        step += 1
        if step % every == 0 or step == total_steps:
            ckpt = _save_state(model, optimizer, step, losses) if rank == 0 else None
            ray.train.report({"step": step, "loss": losses[-1], "lr": res.lr}, checkpoint=ckpt)


def fit_fr(cfg: FRTrainConfig) -> FRTrainResult:
    """Run the TorchTrainer (inside a Ray session) and write backbone.pth + train_log.json to ``cfg.out``."""
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from uiface_ray import storage
    from uiface_ray.evaluate.faceset import read_faceset

    faces = read_faceset(cfg.data, cfg.storage)  # fail early, naming the URL
    _, total_steps = _plan(len(faces.labels), cfg)
    storage.fs.check_writable(cfg.out, cfg.storage)
    ray_storage = cfg.ray_storage or tempfile.mkdtemp(prefix="uiface-fr-ray-")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.model_dump(mode="json"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(name=cfg.run_name, storage_path=ray_storage),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"FR training on {cfg.data} finished without a checkpoint (see the Ray Train log)")
    with result.checkpoint.as_directory() as d:
        backbone = Path(d, BACKBONE_FILE).read_bytes()
        state = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)
    losses = [float(x) for x in state["losses"]]
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"FR training on {cfg.data} produced a non-finite loss")
    backbone_url = storage.join(cfg.out, BACKBONE_FILE)
    log_url = storage.join(cfg.out, "train_log.json")
    log = {"config": cfg.model_dump(mode="json"), "steps": int(state["step"]), "losses": losses,
           "num_classes": faces.num_classes, "num_images": len(faces.labels), "planned_steps": total_steps,
           "encoder": {"kind": "iresnet", "path": backbone_url, "depth": cfg.depth,
                       "embedding_dim": cfg.embedding_dim}}
    storage.write_bytes_atomic(backbone_url, backbone, cfg.storage)
    storage.write_bytes_atomic(log_url, json.dumps(log, indent=2).encode(), cfg.storage)
    return FRTrainResult(backbone_url, log_url, losses, int(state["step"]), faces.num_classes, len(faces.labels))
