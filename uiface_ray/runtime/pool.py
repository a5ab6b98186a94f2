"""Dispatch work items to a fixed pool of actors, re-dispatching what a dead actor held.

Each item is one actor task.  A task that fails because its actor died (``RayActorError``) or
raised (``RayTaskError``) goes back to the front of the queue and is handed to a surviving actor;
no new actors are created, so nothing waits for resources the dead ones might still hold.  Ray's
own ``max_restarts``/``max_task_retries`` cover actors that crash and come back in their slot.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable

import ray
from ray.exceptions import RayActorError, RayTaskError

from uiface_ray.synth.config import ActorPoolConfig

__all__ = ["DispatchStats", "dispatch", "kill_pool", "start_pool", "storage_env", "wait_ready", "wants_gpu"]

log = logging.getLogger(__name__)


@dataclass
class DispatchStats:
    completed: int = 0
    redispatched: int = 0
    actors_lost: int = 0
    stopped_early: bool = False


def dispatch(actors: list, items: Iterable[Any], call: Callable[[Any, Any, int], Any],
             on_result: Callable[[Any, Any], bool | None], *, tasks_per_actor: int, max_attempts: int,
             key: Callable[[Any], Hashable] = lambda item: item) -> DispatchStats:
    """Run ``call(actor, item, attempt) -> ObjectRef`` for every item; ``on_result(item, value)``
    sees each result once, as it arrives; returning True stops the dispatch (what is in flight is
    abandoned: kill the actors afterwards)."""
    pending = deque(items)
    attempts: dict[Hashable, int] = {}
    inflight: dict = {}  # ObjectRef -> (item, actor index)
    alive = set(range(len(actors)))
    stats = DispatchStats()

    def refill() -> None:
        for i in sorted(alive):
            while pending and sum(1 for _, a in inflight.values() if a == i) < tasks_per_actor:
                item = pending.popleft()
                attempt = attempts.get(key(item), 0)
                attempts[key(item)] = attempt + 1
                inflight[call(actors[i], item, attempt)] = (item, i)

    refill()
    while inflight:
        [ref], _ = ray.wait(list(inflight), num_returns=1)
        item, i = inflight.pop(ref)
        try:
            value = ray.get(ref)
        except (RayActorError, RayTaskError) as exc:
            if isinstance(exc, RayActorError):
                if i in alive:
                    stats.actors_lost += 1
                alive.discard(i)
                log.warning("actor %d died holding %s; re-dispatching it", i, key(item))
            else:
                log.warning("%s failed on actor %d: %s", key(item), i, exc)
            if attempts[key(item)] >= max_attempts:
                raise RuntimeError(f"{key(item)} failed {attempts[key(item)]} times; last error: {exc}") from exc
            if not alive:
                raise RuntimeError(f"every actor of the pool died; rerun the job to resume ({exc})") from exc
            pending.appendleft(item)
            stats.redispatched += 1
            refill()
            continue
        stats.completed += 1
        if on_result(item, value):
            stats.stopped_early = True
            break
        refill()
    return stats


# --------------------------------------------------------------------------------------------
# The pool itself

STORAGE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")


def storage_env() -> dict[str, str]:
    """The driver's S3 settings, handed to the actors so that they reach the same storage."""
    return {k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)}


def wants_gpu(pool: ActorPoolConfig) -> bool:
    """Whether the pool's actors take one GPU each (unset: when the cluster has GPUs)."""
    if pool.use_gpu is None:
        return ray.cluster_resources().get("GPU", 0) >= 1
    return pool.use_gpu


def start_pool(worker_cls: type, pool: ActorPoolConfig, use_gpu: bool, max_actors: int, prefix: str,
               args: Callable[[str], tuple]) -> list:
    """A fixed pool: one actor per GPU (``num_gpus=1``) or per CPU slot, at most ``max_actors``.

    ``args(name)`` gives each actor's constructor arguments.  Actors are named
    ``<prefix>-<random tag>-<i>`` so that a test or an operator can find one.
    """
    resources = ray.cluster_resources()
    if use_gpu:
        slots = int(resources.get("GPU", 0))
        options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
    else:
        slots = int(resources.get("CPU", 1) // pool.cpus_per_actor)
        options = {"num_cpus": pool.cpus_per_actor}
    if not pool.num_actors and slots < 1:
        raise RuntimeError(f"no {'GPU' if use_gpu else 'CPU'} slot in the cluster ({resources}); set "
                           "actors.num_actors to wait for an autoscaler, or actors.use_gpu=false")
    n = max(1, min(pool.num_actors or slots, max_actors))
    options.update(max_restarts=pool.max_restarts, max_task_retries=pool.max_restarts)
    env = storage_env()
    if env:
        options["runtime_env"] = {"env_vars": env}
    remote_cls = ray.remote(worker_cls)
    tag = uuid.uuid4().hex[:8]
    names = [f"{prefix}-{tag}-{i}" for i in range(n)]
    return [remote_cls.options(name=name, **options).remote(*args(name)) for name in names]


def kill_pool(actors: list) -> None:
    """Kill every actor of the pool (they hold CPUs/GPUs for life otherwise)."""
    for actor in actors:
        ray.kill(actor)


def wait_ready(actors: list) -> list:
    """Wait until every actor has run its constructor (``actor.ready()``); returns the live ones.

    An actor that died meanwhile is dropped with a warning; if none is left, the last error is raised.
    """
    live, error = [], None
    refs = [(actor, actor.ready.remote()) for actor in actors]
    for actor, ref in refs:
        try:
            ray.get(ref)
            live.append(actor)
        except RayActorError as exc:
            log.warning("an actor died while starting: %s", exc)
            error = exc
    if not live:
        raise RuntimeError(f"no actor of the pool could start: {error}") from error
    return live
