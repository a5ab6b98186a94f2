"""Diffusion training on Ray Train: ``TorchTrainer`` with DDP workers running the pure loop, fed by
Ray Data.

The driver validates everything first (:func:`uiface_ray.train.validate.validate_run`: a scan of the
table's footers and labels, never its images), builds the latent cache when the model is latent
(:mod:`uiface_ray.runtime.latent_cache`: each face encoded once), then starts ``num_workers``
workers.  Each receives the run's small :class:`~uiface_ray.train.stream.TrainData` (by object
reference) and its own stream of batches: one Ray Data dataset per rank
(:mod:`uiface_ray.runtime.ingest`), read and decoded by loader tasks a few batches ahead of the
step, from the step it resumes at; it runs :func:`uiface_ray.train.loop.run_training`, which
resumes from the newest checkpoint of the run folder.  The datasets are callables Ray Train calls at
each worker-group start, reading the run folder's newest step then; a worker whose restored step
differs builds its own from there.  Checkpoints are the run folder's own (local or ``s3://``,
through the storage layer); Ray Train is given a local scratch ``storage_path`` for its bookkeeping
only, removed when the job ends, fails or is interrupted.

The workers run in another working directory and another process: every local path is made
absolute at the driver, and the storage settings (credentials included) are resolved there and
travel as a Ray object reference beside the config, never through ``runtime_env`` (which Ray
writes to its logs) nor inside the config dict (which Ray Train may record).
"""

from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import dataclass

from uiface_ray.config import StorageConfig
from uiface_ray.runtime import ingest
from uiface_ray.runtime.latent_cache import build_latent_cache
from uiface_ray.runtime.session import prepare_ray_train, ray_session
from uiface_ray.runtime.signals import restore_job_handlers
from uiface_ray.runtime.user_error import user_error
from uiface_ray.storage import resolve_urls
from uiface_ray.train.checkpoint import read_latest
from uiface_ray.train.config import TrainConfig
from uiface_ray.train.stream import TrainData, batch_transform, read_spec
from uiface_ray.train.validate import RunPlan, TrainInputError, validate_run

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


def worker_config(cfg: TrainConfig, data: TrainData | None = None) -> dict:
    """What a worker receives: the config without storage, the storage settings and the run's
    :class:`TrainData` (whose read spec holds the storage settings too) by reference."""
    import ray

    return {
        "config": cfg.model_dump(mode="json", exclude={"storage"}),
        "storage": ray.put(cfg.storage.model_dump()),
        "data": None if data is None else ray.put(data),
    }


def start_step(cfg: TrainConfig) -> int:
    latest = read_latest(cfg.output, cfg.storage)
    return 0 if latest is None else int(latest["step"])


def rank_dataset(cfg: TrainConfig, data: TrainData, resources: dict, rank: int, start: int | None = None):
    """Rank ``rank``'s Ray Dataset of local batches from ``start`` (default: the run folder's newest
    checkpoint, read when Ray Train calls this at a worker-group start) to ``max_steps``."""
    start = start_step(cfg) if start is None else start
    ingest.quiet_ray_data()  # in the process that builds it (Ray Train's controller): no progress bars
    return ingest.rank_dataset(data.spec, rank, start, cfg.max_steps, batch_transform(cfg, data), resources)


def worker_batches(cfg: TrainConfig, data: TrainData, rank: int, resources: dict):
    """The worker's stream from its restored step: the trainer's dataset when it was built from that
    step (the usual case), else the same dataset built here from the restored step."""
    import ray.train

    def batches(step: int):
        source = ray.train.get_dataset_shard(f"train_{rank}")
        if step != start_step(cfg):
            source = rank_dataset(cfg, data, resources, rank, step)
        return ingest.iter_batches(source, data.spec.batch_size, cfg.stream.prefetch_batches)

    return batches


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
    data = ray.get(config["data"])
    ingest.quiet_ray_data()
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
    run_training(cfg, ctx, data, worker_batches(cfg, data, ctx.rank, config["loader"]))


def make_trainer(cfg: TrainConfig, data: TrainData, name: str, scratch: str):
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = 1
    loader = ingest.loader_resources(cfg.stream, cfg.num_workers * cfg.cpus_per_worker)
    datasets, dataset_config = ingest.trainer_datasets(
        functools.partial(rank_dataset, cfg, data, loader), cfg.num_workers
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={**worker_config(cfg, data), "loader": loader},
        datasets=datasets,
        dataset_config=dataset_config,
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
            cache = build_latent_cache(cfg) if cfg.model.space == "latent" else None
            data = read_spec(cfg, plan.data, cfg.num_workers, cache)
            ingest.quiet_ray_data()
            prepare_ray_train()
            try:
                make_trainer(cfg, data, f"uiface-train-{int(start)}", scratch).fit()
            except Exception as exc:  # noqa: BLE001 - bad input is one line; anything else re-raised
                error = user_error(exc, TrainInputError)
                if error is None:
                    raise
                raise error from None
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
