"""FR training on Ray Train: a TorchTrainer over ``num_workers`` data-parallel workers fed by Ray Data
(or, with ``runner: local``, one process without Ray).

At the driver, :func:`fit_fr` makes every local path absolute and resolves the storage settings
(a worker runs in another working directory and environment), reads the dataset's footers and label
column (never an image: :func:`uiface_ray.fr.loop.prepare_data`) and hands the config and the small
read spec to the workers inside ``train_loop_config`` (never ``runtime_env``, which Ray logs in
plain text).  Each worker iterates its own Ray Data stream (``get_dataset_shard("train_<rank>")``,
:mod:`uiface_ray.runtime.ingest`): only the rows of its batches, read and decoded by loader tasks a
few batches ahead, in the order the plan fixes from (seed, epoch); it runs
:func:`uiface_ray.fr.loop.run_fr_training` under DDP; rank 0 also scores the verification pairs.
Rank 0 reports a Ray Train checkpoint (``step-<k>``) every epoch (or every ``checkpoint_every``
steps) and at the end; a rerun with the same ``run_name`` and ``ray_storage``, or a restart after
a lost worker (``max_failures``), resumes from the last one at its exact step: the datasets are
built when the worker group starts, from the newest checkpoint's step.  The driver then writes
``backbone.pth`` (insightface layout), ``train_log.json`` and ``verify_curve.png`` to ``out``.  The
default ``ray_storage`` is a temporary folder, removed when the run ends, fails or is interrupted.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile

from uiface_ray import storage
from uiface_ray.errors import InputError
from uiface_ray.fr.config import FRTrainConfig
from uiface_ray.fr.loop import FRData, FRRun, FRTrainResult, fit_fr_local, write_fr_outputs
from uiface_ray.runtime.session import prepare_ray_train, ray_session
from uiface_ray.runtime.signals import restore_job_handlers
from uiface_ray.runtime.user_error import user_error

__all__ = ["FRTrainResult", "fit_fr", "temp_prefix", "train_loop_per_worker"]

STATE_FILE = "state.pt"
STEP_PREFIX = "step-"


def temp_prefix(kind: str, run_name: str) -> str:
    """Prefix of this run's temporary folders (``uiface-fr-ray-<run>-``, ``uiface-fr-ckpt-<run>-``)."""
    return f"uiface-fr-{kind}-{''.join(c if c.isalnum() or c in '-_' else '_' for c in run_name)}-"


def checkpoint_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:09d}"


def newest_step(ray_storage: str, run_name: str, st=None) -> int:
    """The step of the newest checkpoint of ``run_name`` in ``ray_storage`` (0: none): where Ray Train
    resumes, and so where the datasets start."""
    names = storage.list_names(storage.join(ray_storage, run_name), st)
    steps = [int(n[len(STEP_PREFIX) :]) for n in names if n.startswith(STEP_PREFIX) and n[len(STEP_PREFIX) :].isdigit()]
    return max(steps, default=0)


def _save(prefix: str, metrics: dict, state: dict | None) -> None:
    """Report ``metrics`` (every rank) with a checkpoint holding ``state`` (rank 0), named for its step;
    the local copy is removed once Ray Train has persisted it."""
    import ray.train
    import torch
    from ray.train import Checkpoint

    name = checkpoint_name(int(metrics["step"]))
    if state is None:
        ray.train.report(metrics, checkpoint_dir_name=name)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        torch.save(state, os.path.join(tmp, STATE_FILE))
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp), checkpoint_dir_name=name)


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
    from uiface_ray.runtime.ray_compat import quiet_train_report_lines

    quiet_train_report_lines()


def _own_dataset(data: FRData, resources: dict, rank: int, start: int):
    """Rank ``rank``'s Ray Data stream from local step ``start`` to the end of the run."""
    from uiface_ray.runtime import ingest

    return ingest.rank_dataset(data.spec, rank, start, data.plan.total_steps, data.transform(), resources)


def rank_dataset(data: FRData, resources: dict, ray_storage: str, run_name: str, st, rank: int):
    """Rank ``rank``'s stream from the newest checkpoint's step (what Ray Train restores): the trainer's
    ``train_<rank>`` dataset, made at each worker-group start."""
    return _own_dataset(data, resources, rank, newest_step(ray_storage, run_name, st))


def _worker_stream(cfg: FRTrainConfig, data: FRData, setup: dict, rank: int, start: int):
    """This worker's batches from step ``start``: the trainer's dataset, built from the newest checkpoint's
    step; one built here from ``start`` when Ray Train restored another checkpoint (a newer one's folder
    was written but not registered: a worker died between its upload and the report's end)."""
    import ray.train

    from uiface_ray.runtime import ingest

    if start == newest_step(setup["ray_storage"], cfg.run_name, cfg.storage):
        source = ray.train.get_dataset_shard(f"train_{rank}")
    else:
        source = _own_dataset(data, setup["resources"], rank, start)

    def batches(step: int):
        if step != start:
            raise RuntimeError(f"worker {rank}: the stream starts at step {start}, not {step}")
        return ingest.iter_batches(source, cfg.batch_size, cfg.stream.prefetch_batches)

    return batches


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker body; ``config`` holds the resolved ``FRTrainConfig.model_dump()`` ("cfg"), the
    :class:`~uiface_ray.fr.loop.FRData` ("data"), the run's storage and the loaders' resources."""
    import ray.train
    import ray.train.torch
    import torch

    from uiface_ray.evaluate.pairs_verifier import PairsVerifier
    from uiface_ray.fr.loop import run_fr_training
    from uiface_ray.optim.context import WorkerContext

    cfg, data = FRTrainConfig.model_validate(config["cfg"]), config["data"]
    torch.set_num_threads(cfg.torch_threads)
    _quiet_report_lines()
    # Ray Data's error lines for a failed loader task repeat the exception this worker raises
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    verifier = None
    if rank == 0 and cfg.verify_pairs:
        size = data.plan.input_size
        verifier = PairsVerifier.load(cfg.verify_pairs, cfg.verify_images, size, cfg.verify_max_pairs, cfg.storage)
    mean, from_rank0 = _collectives(world)
    restored = _restored()
    batches = _worker_stream(cfg, data, config, rank, int(restored["step"]) if restored else 0)
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
        restored=restored,
    )
    try:
        run_fr_training(cfg, batches, data.plan, ctx, cfg.seed, verifier, cfg.checkpoint_every)
    except InputError:
        _quiet_worker_error()
        raise


def _quiet_worker_error() -> None:
    """A bad input is one error: line at the driver; Ray Train would also log its traceback here."""
    from uiface_ray.runtime.ray_compat import quiet_train_worker_errors

    quiet_train_worker_errors()


def _fit_ray_train(cfg: FRTrainConfig, data: FRData, ray_storage: str) -> FRRun:
    import torch
    from ray.train import FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from uiface_ray.evaluate.pairs_verifier import CurvePoint
    from uiface_ray.runtime import ingest

    ingest.quiet_ray_data()
    resources = ingest.loader_resources(cfg.stream, cfg.num_workers * cfg.cpus_per_worker)
    make = functools.partial(rank_dataset, data, resources, ray_storage, cfg.run_name, cfg.storage)
    datasets, dataset_config = ingest.trainer_datasets(make, cfg.num_workers)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "data": data,
            "ray_storage": ray_storage,
            "resources": resources,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})},
        ),
        datasets=datasets,
        dataset_config=dataset_config,
        # Ray Train's own INFO lines (a "Reporting training result" per checkpoint and rank, worker
        # placement) drown the progress lines; its warnings and errors still show.
        run_config=RunConfig(
            name=cfg.run_name,
            storage_path=ray_storage,
            logging_config=LoggingConfig(log_level="WARNING"),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # noqa: BLE001 - a worker's or loader's bad input is one line; the rest re-raised
        user = user_error(exc)
        if user is None:
            raise
        raise user from None
    finally:
        restore_job_handlers()  # fit() leaves Ray Train's SIGINT handler in place
    if result.checkpoint is None:
        raise RuntimeError(f"FR training on {cfg.data} finished without a checkpoint (see the Ray Train log)")
    with result.checkpoint.as_directory() as d:
        state = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)
    step, elapsed = int(state["step"]), float(state["elapsed_s"])
    rate = step * cfg.batch_size * cfg.num_workers / max(elapsed, 1e-9)
    curve = [CurvePoint(**c) for c in state["curve"]]
    return FRRun(state["backbone"], step, [float(x) for x in state["losses"]], curve, elapsed, rate)


def fit_fr(cfg: FRTrainConfig) -> FRTrainResult:
    """Train (Ray Train, in the open Ray session or one started here from ``cfg.ray``; or one process)
    and write the outputs to ``cfg.out``."""
    from uiface_ray.fr.loop import check_inputs, prepare_data

    cfg = storage.resolve_urls(cfg)
    if cfg.runner == "local":
        return fit_fr_local(cfg)
    check_inputs(cfg)
    data = prepare_data(cfg, cfg.data, cfg.num_workers)  # footers and labels only; errors name the file
    storage.fs.check_writable(cfg.out, cfg.storage)
    scratch = None if cfg.ray_storage else tempfile.mkdtemp(prefix=temp_prefix("ray", cfg.run_name))
    try:
        with ray_session(cfg.ray):
            prepare_ray_train()
            run = _fit_ray_train(cfg, data, cfg.ray_storage or scratch)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return write_fr_outputs(cfg, run, data.plan, data.num_images)
