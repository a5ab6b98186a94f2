"""FR training on Ray Train: a TorchTrainer over ``num_workers`` data-parallel workers (or, with
``runner: local``, one process without Ray).

At the driver, :func:`fit_fr` makes every local path absolute and resolves the storage settings
(a worker runs in another working directory and environment), then hands the config to the
workers inside ``train_loop_config`` (never ``runtime_env``, which Ray logs in plain text).
Each worker reads the dataset through the storage layer, keeps its own fixed share of the rows
(a permutation seeded by the job seed, split by rank), decodes it once at the backbone's input
size and runs :func:`uiface_ray.fr.loop.run_fr_training` under DDP; rank 0 also scores
the verification pairs.  Rank 0 reports a Ray Train checkpoint every epoch (or every
``checkpoint_every`` steps) and at the end; a rerun with the same ``run_name`` and ``ray_storage``
resumes from the last one.  The driver then writes ``backbone.pth`` (insightface layout),
``train_log.json`` and ``verify_curve.png`` to ``out``.  The default ``ray_storage`` is a
temporary folder, removed when the run ends, fails or is interrupted.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile

import numpy as np

from uiface_ray.runtime.session import prepare_ray_train, ray_session
from uiface_ray.runtime.signals import restore_job_handlers
from uiface_ray.fr.loop import FRRun, FRTrainResult, fit_fr_local, write_fr_outputs
from uiface_ray.evaluate.config import FRTrainConfig

__all__ = ["FRTrainResult", "fit_fr", "temp_prefix", "train_loop_per_worker"]

STATE_FILE = "state.pt"


def temp_prefix(kind: str, run_name: str) -> str:
    """Prefix of this run's temporary folders (``uiface-fr-ray-<run>-``, ``uiface-fr-ckpt-<run>-``)."""
    return f"uiface-fr-{kind}-{''.join(c if c.isalnum() or c in '-_' else '_' for c in run_name)}-"


def _save(prefix: str, metrics: dict, state: dict | None) -> None:
    """Report ``metrics`` (every rank) with a checkpoint holding ``state`` (rank 0); the local copy is
    removed once Ray Train has persisted it."""
    import ray.train
    import torch
    from ray.train import Checkpoint

    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        torch.save(state, os.path.join(tmp, STATE_FILE))
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))


def _restored() -> dict | None:
    import ray.train
    import torch

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)


def _collectives(world: int):
    """(mean over ranks, rank 0's value) of a float; plain identity for one worker."""
    import torch
    import torch.distributed as dist

    if world == 1 or not dist.is_initialized():
        return (lambda v: v), (lambda v: v)

    def mean(value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / world

    def from_rank0(value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(t, src=0)
        return float(t)

    return mean, from_rank0


def _quiet_report_lines() -> None:
    """Ray Train 2.x logs "Reporting training result ..." for every rank and report on a logger named
    after its source file, which its LoggingConfig does not reach; keep its warnings only."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray Train layout: nothing to quiet
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker body; ``config`` is the resolved ``FRTrainConfig.model_dump()``."""
    import ray.train
    import ray.train.torch
    import torch

    from uiface_ray.evaluate.faceset import decode_images, read_faceset
    from uiface_ray.fr.loop import plan_training, run_fr_training
    from uiface_ray.optim.context import WorkerContext
    from uiface_ray.evaluate.pairs_verifier import PairsVerifier

    cfg = FRTrainConfig.model_validate(config)
    torch.set_num_threads(cfg.torch_threads)
    _quiet_report_lines()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    faces = read_faceset(cfg.data, cfg.storage)
    side = decode_images(faces.images[:1]).shape[1]
    plan = plan_training(len(faces.labels), faces.num_classes, side, cfg, world, cfg.data)
    perm = np.random.default_rng([cfg.seed, 0x5EED]).permutation(len(faces.labels))
    mine = np.sort(perm[rank::world][: len(faces.labels) // world])
    images = decode_images([faces.images[i] for i in mine], plan.input_size)  # (n, s, s, 3)
    verifier = None
    if rank == 0 and cfg.verify_pairs:
        verifier = PairsVerifier.load(
            cfg.verify_pairs, cfg.verify_images, plan.input_size, cfg.verify_max_pairs, cfg.storage
        )
    mean, from_rank0 = _collectives(world)
    # Through logging, not print: Ray Train tees a worker's print to stdout and to its console
    # logger, so every printed line would reach the driver twice.
    log = logging.getLogger("uiface_ray.train_fr").info
    ctx = WorkerContext(
        rank=rank,
        world_size=world,
        device=ray.train.torch.get_device(),
        wrap=ray.train.torch.prepare_model,
        mean=mean,
        from_rank0=from_rank0,
        report=functools.partial(_save, temp_prefix("ckpt", cfg.run_name)),
        log=log,
        restored=_restored(),
    )
    run_fr_training(cfg, images, faces.labels[mine], plan, ctx, cfg.seed, verifier, cfg.checkpoint_every)


def _fit_ray_train(cfg: FRTrainConfig, ray_storage: str) -> FRRun:
    import torch
    from ray.train import LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from uiface_ray.evaluate.pairs_verifier import CurvePoint

    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.model_dump(mode="json"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        # Ray Train's own INFO lines (a "Reporting training result" per checkpoint and rank, worker
        # placement) drown the progress lines; its warnings and errors still show.
        run_config=RunConfig(
            name=cfg.run_name, storage_path=ray_storage, logging_config=LoggingConfig(log_level="WARNING")
        ),
    )
    try:
        result = trainer.fit()
    finally:
        restore_job_handlers()  # fit() leaves Ray Train's SIGINT handler in place
    if result.checkpoint is None:
        raise RuntimeError(f"FR training on {cfg.data} finished without a checkpoint (see the Ray Train log)")
    with result.checkpoint.as_directory() as d:
        state = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)
    step, elapsed = int(state["step"]), float(state["elapsed_s"])
    rate = step * cfg.batch_size * cfg.num_workers / max(elapsed, 1e-9)
    return FRRun(
        state["backbone"],
        step,
        [float(x) for x in state["losses"]],
        [CurvePoint(**c) for c in state["curve"]],
        elapsed,
        rate,
    )


def fit_fr(cfg: FRTrainConfig) -> FRTrainResult:
    """Train (Ray Train, in the open Ray session or one started here from ``cfg.ray``; or one process)
    and write the outputs to ``cfg.out``."""
    from uiface_ray import storage
    from uiface_ray.evaluate.faceset import decode_images, read_faceset
    from uiface_ray.fr.loop import check_inputs, plan_training

    cfg = storage.resolve_urls(cfg)
    if cfg.runner == "local":
        return fit_fr_local(cfg)
    check_inputs(cfg)
    faces = read_faceset(cfg.data, cfg.storage)  # fail early, naming the URL
    plan = plan_training(
        len(faces.labels), faces.num_classes, decode_images(faces.images[:1]).shape[1], cfg, cfg.num_workers, cfg.data
    )
    storage.fs.check_writable(cfg.out, cfg.storage)
    scratch = None if cfg.ray_storage else tempfile.mkdtemp(prefix=temp_prefix("ray", cfg.run_name))
    try:
        with ray_session(cfg.ray):
            prepare_ray_train()
            run = _fit_ray_train(cfg, cfg.ray_storage or scratch)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return write_fr_outputs(cfg, run, plan, len(faces.labels))
