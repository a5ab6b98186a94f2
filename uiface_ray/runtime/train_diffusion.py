"""Diffusion training on Ray Train: ``TorchTrainer`` with DDP workers running the pure loop.

The driver validates everything first (:func:`uiface_ray.train.validate.validate_run`), then
starts ``num_workers`` workers; each rebuilds the model and data from the config dict and runs
:func:`uiface_ray.train.loop.run_training`, which resumes from the newest checkpoint of the run
folder.  Checkpoints are the run folder's own (local or ``s3://``, through the storage layer);
Ray Train is given a local scratch ``storage_path`` for its bookkeeping only, removed when the
job ends, fails or is interrupted.

The workers run in another working directory and another process: every local path is made
absolute at the driver, and the storage settings (credentials included) are resolved there and
travel as a Ray object reference beside the config, never through ``runtime_env`` (which Ray
writes to its logs) nor inside the config dict (which Ray Train may record).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

from uiface_ray.config import StorageConfig
from uiface_ray.runtime.session import prepare_ray_train, ray_session
from uiface_ray.runtime.signals import restore_job_handlers
from uiface_ray.storage import resolve_urls
from uiface_ray.train.checkpoint import read_latest
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.validate import RunPlan, validate_run

__all__ = ["TrainResult", "train_diffusion", "worker_config"]


@dataclass
class TrainResult:
    output: str
    start_step: int
    step: int
    checkpoint: str | None
    model: str | None
    metrics: dict | None
    wall_s: float


def _mean_over_ranks(value: float) -> float:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def worker_config(cfg: TrainConfig) -> dict:
    """What a worker receives: the config without storage, and the storage settings by reference."""
    import ray

    return {"config": cfg.model_dump(mode="json", exclude={"storage"}), "storage": ray.put(cfg.storage.model_dump())}


def config_from_worker(config: dict) -> TrainConfig:
    """Inverse of :func:`worker_config`, on the worker."""
    import ray

    return TrainConfig.model_validate({**config["config"], "storage": StorageConfig(**ray.get(config["storage"]))})


def train_loop_per_worker(config: dict) -> None:
    """Runs on each Ray Train worker."""
    import ray.train
    import ray.train.torch

    from uiface_ray.optim.context import WorkerContext
    from uiface_ray.train.loop import run_training

    cfg = config_from_worker(config)
    context = ray.train.get_context()
    ctx = WorkerContext(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
        wrap=lambda module: ray.train.torch.prepare_model(module, move_to_device=True),
        # no ray.train.report: the metrics live in the run folder's checkpoints, and each report
        # printed a "Reporting training result" line
        mean=_mean_over_ranks,
        log=lambda line: print(line, flush=True),
    )
    run_training(cfg, ctx)


def make_trainer(cfg: TrainConfig, name: str, scratch: str):
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=worker_config(cfg),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=scratch,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
    )


def train_diffusion(cfg: TrainConfig) -> TrainResult:
    """Validate, train to ``cfg.max_steps`` (resuming if the run folder has a checkpoint), report."""
    cfg = resolve_urls(cfg)
    plan: RunPlan = validate_run(cfg)
    print(
        f"[train] {plan.num_rows} images of {plan.num_identities} identities, encoder {plan.encoder_info}; "
        f"{'resuming at step ' + str(plan.start_step) if plan.start_step else 'fresh run'} -> {cfg.output}",
        flush=True,
    )
    start = time.time()
    if plan.start_step < cfg.max_steps:
        with ray_session(cfg.ray), tempfile.TemporaryDirectory(prefix="uiface-raytrain-") as scratch:
            prepare_ray_train()
            try:
                make_trainer(cfg, f"uiface-train-{int(start)}", scratch).fit()
            finally:
                restore_job_handlers()  # fit() leaves Ray Train's SIGINT handler in place
    latest = read_latest(cfg.output, cfg.storage) or {}
    return TrainResult(
        output=cfg.output,
        start_step=plan.start_step,
        step=int(latest.get("step", 0)),
        checkpoint=latest.get("checkpoint"),
        model=latest.get("model"),
        metrics=latest.get("metrics"),
        wall_s=time.time() - start,
    )
