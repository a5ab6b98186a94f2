"""Distributed export: the per-shard work of :func:`uiface_ray.export.run.run_export` on a pool of Ray actors.

The driver validates, plans and resumes exactly as the in-process export does (see
:mod:`uiface_ray.export.run`); only the shards left to do are handed out here, one shard per
actor task, ``workers.tasks_per_worker`` queued per actor (so at most workers x that many are in
flight and the driver holds one small record per finished shard).  Each actor gets the resolved
storage settings in its constructor argument (never through its environment, which Ray logs);
every URL in a task was made absolute at the driver.

Failures, through :class:`uiface_ray.runtime.pool.ActorPool`: a shard whose task fails (a crash, a
dead actor) is handed to another actor, up to ``workers.max_attempts`` tries, then the export
stops with one error naming the shard and its last error; bad input found by a worker (a shard
whose hash differs from the manifest) stops it at once with that error.  What finished stays in
the staging folder for the rerun (a user error removes it, as in the in-process export).
"""

from __future__ import annotations

from typing import Callable

from uiface_ray.config import StorageConfig
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.run import ExportResult, run_export
from uiface_ray.export.shard import ShardDone, ShardTask, export_shard
from uiface_ray.runtime.pool import ActorPool
from uiface_ray.runtime.session import ray_session
from uiface_ray.config import ActorPoolConfig

__all__ = ["ExportWorker", "run_export_on_ray"]


class ExportWorker:
    """One export actor: exports one shard per :meth:`run_shard` call."""

    def __init__(self, storage_cfg: dict):
        self.storage = StorageConfig.model_validate(storage_cfg)

    def ready(self) -> bool:
        return True

    def run_shard(self, task: ShardTask, attempt: int) -> ShardDone:
        return export_shard(task, self.storage)


def _pool_config(cfg: ExportConfig) -> ActorPoolConfig:
    w = cfg.workers
    return ActorPoolConfig(
        num_actors=w.num_workers,
        use_gpu=False,
        cpus_per_actor=w.cpus_per_worker,
        tasks_per_actor=w.tasks_per_worker,
        max_restarts=w.max_restarts,
        max_shard_attempts=w.max_attempts,
    )


def _mapper(cfg: ExportConfig):
    pool = _pool_config(cfg)

    def map_shards(tasks: list[ShardTask], storage_cfg: StorageConfig, on_done: Callable[[ShardDone], None]) -> None:
        if not tasks:
            return
        args = (storage_cfg.model_dump(mode="json"),)
        with ray_session(cfg.ray):  # after run_export validated the inputs; the pipeline's session if open
            with ActorPool(
                ExportWorker, args, pool, use_gpu=False, max_actors=len(tasks), name="uiface-export"
            ) as workers:
                for _, done in workers.map(tasks, _export, label=lambda task: task.name):
                    on_done(done)

    return map_shards


def _export(actor, task: ShardTask, attempt: int):
    return actor.run_shard.remote(task, attempt)


def run_export_on_ray(cfg: ExportConfig) -> ExportResult:
    """Export the dataset of ``cfg`` with its shards spread over Ray actors (in the open Ray session, or
    one started from ``cfg.ray`` once the inputs are validated and there is a shard left to export)."""
    return run_export(cfg, map_shards=_mapper(cfg))
