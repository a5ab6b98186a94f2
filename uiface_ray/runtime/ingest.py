"""Ray Data feeding Ray Train: each training worker's stream of batches, read and decoded by loader tasks.

One dataset per rank (``train_0``, ``train_1``, ...), built from the Ray-free plan
(:mod:`uiface_ray.data.stream`): the rank's units from its start step, in plan order
(``from_items``), then ``map_batches`` reading each unit (:func:`uiface_ray.data.stream_read.read_unit`)
and applying the stage's transform (decoding) in batches of the local batch size, with
``preserve_order``.  The trainer gets the datasets as callables (Ray Train's ``GenDataset``), which
it calls at every worker-group start, so a restart after a failure builds them from the newest
checkpoint's step; ``DataConfig(datasets_to_split=[])`` hands every worker its own, and the worker
iterates ``get_dataset_shard(f"train_{rank}")``.

Why per-rank datasets and not one split: ``streaming_split`` hands blocks to whichever worker asks
first, so which rows a worker gets would depend on timing; the plan fixes them from (seed, epoch,
rank, step) instead, which exact resume needs.

Loader tasks get real CPUs when the cluster has CPUs beyond the training workers', else zero CPUs
with a bounded concurrency (:func:`loader_resources`): Ray Train keeps the workers' CPUs out of
Ray Data's budget, and a task that asks for a CPU nobody can give waits forever.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator

import numpy as np

from uiface_ray.data.stream import Unit
from uiface_ray.config import StreamConfig
from uiface_ray.data.stream_read import ReadSpec, read_unit
from uiface_ray.errors import input_error_of

__all__ = ["iter_batches", "loader_resources", "quiet_ray_data", "rank_dataset", "trainer_datasets"]


def loader_resources(stream: StreamConfig, train_cpus: float) -> dict:
    """``num_cpus`` and ``concurrency`` of the loader tasks (see the module docstring)."""
    import ray
    import ray.data

    cpus = stream.loader_cpus
    if cpus is None:
        spare = float(ray.cluster_resources().get("CPU", 0.0)) - train_cpus
        cpus = 1.0 if spare >= 1.0 else 0.0
    return {"num_cpus": float(cpus), "compute": ray.data.TaskPoolStrategy(size=stream.loader_concurrency)}


def _quiet(ctx) -> None:
    """No progress bars or execution banners; a loader's error raised as itself (a bad file stays the
    InputError that names it instead of becoming Ray Data's UserCodeException)."""
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.raise_original_map_exception = True


def quiet_ray_data() -> None:
    """:func:`_quiet` for this process's Ray Data (Ray Train hands the driver's DataContext to its
    workers) and its INFO lines off (warnings and errors still show)."""
    import logging

    from ray.data import DataContext

    from uiface_ray.runtime.ray_compat import quiet_ray_data_progress_notice

    _quiet(DataContext.get_current())
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    quiet_ray_data_progress_notice()


def _read_units(batch: dict, spec: ReadSpec) -> Iterator[dict]:
    """Loader task: each unit of ``batch`` -> its rows, in pieces of at most the local batch size."""
    for i in range(len(batch["epoch"])):
        rows = read_unit(spec, Unit.from_dict({k: batch[k][i] for k in ("epoch", "span", "lo", "hi")}))
        for at in range(0, len(rows["row"]), spec.batch_size):
            yield {k: v[at : at + spec.batch_size] for k, v in rows.items()}


def rank_dataset(spec: ReadSpec, rank: int, start_step: int, stop_step: int, transform: Callable, resources: dict):
    """Rank ``rank``'s batches over local steps ``start_step:stop_step`` as a Ray Dataset, in order."""
    import ray.data

    units = [u.to_dict() for u in spec.plan.units(rank, start_step, stop_step)]
    size = resources["compute"].size
    if size is not None and size > max(1, len(units)):  # no more tasks than units (Ray Data warns of it)
        resources = {**resources, "compute": ray.data.TaskPoolStrategy(size=max(1, len(units)))}
    ds = ray.data.from_items(
        units or [{"epoch": 0, "span": 0, "lo": 0, "hi": 0}], override_num_blocks=max(1, len(units))
    )
    ds = ds.map_batches(_read_units, batch_size=1, batch_format="numpy", fn_kwargs={"spec": spec}, **resources)
    ds = ds.map_batches(transform, batch_size=spec.batch_size, batch_format="numpy", **resources)
    ds.context.execution_options.preserve_order = True
    _quiet(ds.context)  # a dataset keeps the context of the process that made it (Ray Train's controller)
    return ds


def trainer_datasets(make: Callable[[int], object], world: int):
    """``(datasets, dataset_config)`` for ``TorchTrainer``: ``train_<rank>`` -> ``make(rank)``, called by
    Ray Train at each worker-group start; never split, kept in order."""
    from ray.data import ExecutionOptions
    from ray.train import DataConfig

    datasets = {f"train_{r}": functools.partial(make, r) for r in range(world)}
    return datasets, DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True))


def iter_batches(source, batch_size: int, prefetch_batches: int) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches of exactly ``batch_size`` rows from a Dataset or a DataIterator, in order; a bad
    input met by a loader task is raised as itself (an InputError Ray Train hands to the driver)."""
    try:
        yield from source.iter_batches(
            batch_size=batch_size, batch_format="numpy", prefetch_batches=prefetch_batches, drop_last=True
        )
    except Exception as exc:  # noqa: BLE001 - the user's error unwrapped; anything else as it was
        user = input_error_of(exc)
        if user is None:
            raise
        if user.args and isinstance(user.args[0], str):  # Ray Data appends lines on retries to the message
            user.args = (user.args[0].split("\n", 1)[0], *user.args[1:])
        raise user from None
