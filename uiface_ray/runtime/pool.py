"""Dispatch work items to a fixed pool of actors, re-dispatching what a dead actor held.

Each item is one actor task.  A task that fails because its actor died (``RayActorError``) or
raised (``RayTaskError``) goes back to the front of the queue and is handed to a surviving actor;
no new actors are created, so nothing waits for resources the dead ones might still hold.  Ray's
own ``max_restarts``/``max_task_retries`` cover actors that crash and come back in their slot.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable

import ray
from ray.exceptions import RayActorError, RayTaskError

from uiface_ray.errors import InputError
from uiface_ray.config import ActorPoolConfig

__all__ = [
    "DispatchStats",
    "PoolError",
    "PoolPlan",
    "dispatch",
    "input_error_of",
    "kill_pool",
    "one_line",
    "plan_pool",
    "ProgressBoard",
    "board_of",
    "start_board",
    "start_pool",
    "wait_ready",
    "wants_gpu",
]

log = logging.getLogger(__name__)


class PoolError(RuntimeError):
    """The pool cannot go on (no slot, every actor dead, an item failing again and again)."""


def one_line(exc: BaseException | None) -> str:
    """The first line of an error's message (a Ray task error carries the remote traceback)."""
    if exc is None:
        return ""
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def input_error_of(exc: BaseException | None) -> InputError | None:
    """The :class:`InputError` (bad input, unreachable store) a remote task or constructor raised,
    found along the ``cause`` chain Ray keeps; None for anything else."""
    for _ in range(5):
        if exc is None:
            return None
        if isinstance(exc, InputError) and not isinstance(exc, (RayActorError, RayTaskError)):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else None
    return None


@dataclass
class DispatchStats:
    completed: int = 0
    redispatched: int = 0
    actors_lost: int = 0
    stopped_early: bool = False


def dispatch(
    actors: list,
    items: Iterable[Any],
    call: Callable[[Any, Any, int], Any],
    on_result: Callable[[Any, Any], bool | None],
    *,
    tasks_per_actor: int,
    max_attempts: int,
    key: Callable[[Any], Hashable] = lambda item: item,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 5.0,
) -> DispatchStats:
    """Run ``call(actor, item, attempt) -> ObjectRef`` for every item; ``on_result(item, value)``
    sees each result once, as it arrives; returning True stops the dispatch (what is in flight is
    cancelled, here as on any error: then kill the actors).  ``on_tick()`` runs at least
    every ``tick_s`` seconds while tasks run (progress inside long tasks).

    A task that raises an :class:`InputError` (bad input, a store that stays unreachable after the
    task's own retries) stops the dispatch with that error: running it elsewhere cannot help.
    """
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

    def failed(item: Any, i: int, exc: Exception) -> None:
        """Re-queue an item whose task failed, or raise when that cannot help."""
        bad_input = input_error_of(exc)
        if bad_input is not None:
            raise bad_input from None
        if isinstance(exc, RayActorError):
            if i in alive:
                stats.actors_lost += 1
            alive.discard(i)
            log.warning("actor %d died holding %s; re-dispatching it", i, key(item))
        else:
            log.warning("%s failed on actor %d: %s", key(item), i, one_line(exc))
        if attempts[key(item)] >= max_attempts:
            raise PoolError(f"{key(item)} failed {attempts[key(item)]} times; last error: {one_line(exc)}") from exc
        if not alive:
            raise PoolError(f"every actor of the pool died; rerun the job to resume ({one_line(exc)})") from exc
        pending.appendleft(item)
        stats.redispatched += 1

    try:
        refill()
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=tick_s if on_tick else None)
            if on_tick:
                on_tick()
            if not ready:
                continue
            item, i = inflight.pop(ready[0])
            try:
                value = ray.get(ready[0])
            except (RayActorError, RayTaskError) as exc:
                failed(item, i, exc)
            else:
                stats.completed += 1
                if on_result(item, value):
                    stats.stopped_early = True
                    break
            refill()
    finally:
        _cancel(list(inflight))  # nothing left running for Ray to retry when the actors are killed
    return stats


# --------------------------------------------------------------------------------------------
# The pool itself
#
# Settings reach an actor only through its constructor arguments (a config dict whose storage
# section the driver resolved with ``uiface_ray.storage.resolve_storage``): never through
# ``runtime_env`` env_vars, which Ray writes to its logs in plain text.


@dataclass(frozen=True)
class PoolPlan:
    """How many actors, and the resources each one asks for."""

    num_actors: int
    num_gpus: int
    num_cpus: int


def wants_gpu(pool: ActorPoolConfig, resources: dict[str, float] | None = None) -> bool:
    """Whether the pool's actors take one GPU each (unset: when the cluster has GPUs)."""
    if pool.use_gpu is None:
        resources = ray.cluster_resources() if resources is None else resources
        return resources.get("GPU", 0) >= 1
    return pool.use_gpu


def plan_pool(pool: ActorPoolConfig, use_gpu: bool, max_actors: int, resources: dict[str, float]) -> PoolPlan:
    """One actor per GPU (``num_gpus=1``) or per ``cpus_per_actor`` CPUs, at most ``max_actors``
    (the work items) and exactly ``pool.num_actors`` when set (an autoscaler may add the slots)."""
    if use_gpu:
        slots = int(resources.get("GPU", 0))
    else:
        slots = int(resources.get("CPU", 1) // pool.cpus_per_actor)
    if not pool.num_actors and slots < 1:
        raise PoolError(
            f"no {'GPU' if use_gpu else 'CPU'} slot in the cluster ({dict(resources)}); set "
            "actors.num_actors to wait for an autoscaler, or actors.use_gpu=false"
        )
    n = max(1, min(pool.num_actors or slots, max_actors))
    return PoolPlan(n, 1 if use_gpu else 0, 1 if use_gpu else pool.cpus_per_actor)


def start_pool(
    worker_cls: type, pool: ActorPoolConfig, use_gpu: bool, max_actors: int, prefix: str, args: Callable[[str], tuple]
) -> list:
    """Start the actors of :func:`plan_pool`; ``args(name)`` gives each one's constructor arguments.

    Actors are named ``<prefix>-<random tag>-<i>`` so that a test or an operator can find one.
    """
    plan = plan_pool(pool, use_gpu, max_actors, ray.cluster_resources())
    options: dict[str, Any] = {
        "num_cpus": plan.num_cpus,
        "max_restarts": pool.max_restarts,
        "max_task_retries": pool.max_restarts,
    }
    if plan.num_gpus:
        options["num_gpus"] = plan.num_gpus
    remote_cls = ray.remote(worker_cls)
    tag = uuid.uuid4().hex[:8]
    names = [f"{prefix}-{tag}-{i}" for i in range(plan.num_actors)]
    return [remote_cls.options(name=name, **options).remote(*args(name)) for name in names]


def kill_pool(actors: list) -> None:
    """Kill every actor of the pool without restart (they hold CPUs/GPUs for life otherwise).

    :func:`dispatch` cancels what it leaves in flight before it returns or raises: an actor killed
    with a task in flight makes Ray log that the task "will be retried" (measured: after a cancel
    it logs nothing).
    """
    for actor in actors:
        ray.kill(actor, no_restart=True)


def _cancel(refs: Iterable) -> None:
    for ref in refs:
        try:
            ray.cancel(ref)
        except Exception as exc:  # noqa: BLE001 - a task that already finished cannot be cancelled
            log.debug("cancel: %s", exc)


def wait_ready(actors: list) -> list:
    """Wait until every actor has run its constructor (``actor.ready()``); returns the live ones.

    An actor whose constructor met bad input (an unreachable store, a changed model) keeps the
    :class:`uiface_ray.errors.InputError` and raises it from ``ready()``: it is raised here with
    its type and message (one ``error:`` line for the user).  An actor that died meanwhile is
    dropped with a warning; if none is left, :class:`PoolError` is raised.
    """
    live, error = [], None
    refs = [(actor, actor.ready.remote()) for actor in actors]
    for actor, ref in refs:
        try:
            ray.get(ref)
            live.append(actor)
        except RayTaskError as exc:  # the constructor caught an input error; ready() raised it
            raise input_error_of(exc) or PoolError(f"an actor could not start: {one_line(exc)}") from None
        except RayActorError as exc:
            log.warning("an actor died while starting: %s", one_line(exc))
            error = error or exc
    if not live:
        raise PoolError(f"no actor of the pool could start: {one_line(error)}") from error
    return live


class ProgressBoard:
    """A tiny named actor (no CPU) where workers post images done inside unfinished items, per
    item key; the driver reads it between results so that its progress line moves inside long
    items.  Workers find it by name (:func:`board_of`): an actor handle among a restartable
    actor's constructor arguments makes Ray log an error."""

    def __init__(self):
        self.partial: dict = {}

    def start(self, key) -> None:
        self.partial[key] = 0

    def add(self, key, n: int) -> None:
        self.partial[key] = self.partial.get(key, 0) + n

    def finish(self, key) -> None:
        self.partial.pop(key, None)

    def snapshot(self) -> dict:
        return dict(self.partial)


def start_board(name: str):
    """The :class:`ProgressBoard` actor of one job (``num_cpus=0``: it never waits for a slot)."""
    return ray.remote(ProgressBoard).options(num_cpus=0, name=name).remote()


def board_of(name: str | None):
    """The board a worker posts to, by name (None: no board)."""
    return ray.get_actor(name) if name else None
