"""Dispatch work items to a fixed pool of actors, re-dispatching what a lost actor held.

Each item is one actor task.  A task that fails because its actor is gone or unreachable (any
``RayActorError``: ``ActorDiedError``, or ``ActorUnavailableError`` when the actor's node went
away) or raised (``RayTaskError``) goes back to the front of the queue and is handed to a
surviving actor.  A lost actor is killed for good (so that it never comes back holding a slot
nobody uses) and replaced only when the cluster has a free slot for a new one right then, so
nothing ever waits for resources the lost ones might still hold.  Ray's own
``max_restarts``/``max_task_retries`` cover actors that crash and come back in their slot.

Before starting, :func:`start_pool` checks that the cluster's nodes can hold every actor: an
embedded Ray never grows, so a pool that cannot fit there is refused with one line
(:class:`PoolTooLargeError`); on a cluster that may grow, the wait is said and bounded.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable

import ray
from ray.exceptions import RayActorError, RayTaskError

from uiface_ray.errors import InputError, input_error_of
from uiface_ray.config import ActorPoolConfig

__all__ = [
    "DispatchStats",
    "PoolError",
    "PoolPlan",
    "PoolTooLargeError",
    "dispatch",
    "kill_pool",
    "replacer",
    "one_line",
    "plan_pool",
    "check_fits",
    "cluster_is_fixed",
    "start_pool",
    "wait_ready",
    "wants_gpu",
]

log = logging.getLogger(__name__)


class PoolError(RuntimeError):
    """The pool cannot go on (no slot, every actor dead, an item failing again and again)."""


class PoolTooLargeError(InputError, PoolError):
    """The pool asked for more than the cluster can ever hold, or every actor was lost and no slot
    is left for a new one: one ``error:`` line (exit 2) that says what to change or to rerun."""


def one_line(exc: BaseException | None) -> str:
    """The first line of an error's message (a Ray task error carries the remote traceback)."""
    if exc is None:
        return ""
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    replace: Callable[[], Any | None] | None = None,
) -> DispatchStats:
    """Run ``call(actor, item, attempt) -> ObjectRef`` for every item; ``on_result(item, value)``
    sees each result once, as it arrives; returning True stops the dispatch (what is in flight is
    cancelled, here as on any error: then kill the actors).  ``on_tick()`` runs at least
    every ``tick_s`` seconds while tasks run (progress inside long tasks).  ``replace()`` (see
    :func:`replacer`) gives a new actor for a lost one, or None when the cluster has no free slot;
    a new actor is appended to ``actors`` (so that the caller kills it too).

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

    def lost(i: int, exc: Exception) -> None:
        """Actor ``i`` died or its node went away: drop it for good, and replace it if a slot is free."""
        if i not in alive:
            return
        alive.discard(i)
        stats.actors_lost += 1
        with contextlib.suppress(Exception):  # already gone: nothing to kill
            ray.kill(actors[i], no_restart=True)
        new = replace() if replace is not None else None
        if new is not None:
            actors.append(new)
            alive.add(len(actors) - 1)
            log.warning("actor %d lost (%s); started actor %d in a free slot", i, one_line(exc), len(actors) - 1)
        elif not alive:
            raise PoolTooLargeError(
                f"every actor of the pool was lost and the cluster has no free slot for a new one "
                f"({one_line(exc)}); rerun the same command to resume when nodes are back"
            ) from None

    def failed(item: Any, i: int, exc: Exception) -> None:
        """Re-queue an item whose task failed, or raise when that cannot help."""
        bad_input = input_error_of(exc)
        if bad_input is not None:
            raise bad_input from None
        if isinstance(exc, RayActorError):
            log.warning("actor %d lost holding %s; re-dispatching it", i, key(item))
            lost(i, exc)
        else:
            log.warning("%s failed on actor %d: %s", key(item), i, one_line(exc))
        if attempts[key(item)] >= max_attempts:
            raise PoolError(f"{key(item)} failed {attempts[key(item)]} times; last error: {one_line(exc)}") from exc
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


AUTOSCALE_WAIT_S = 900.0  # how long a pool larger than a growable cluster waits for its actors


def _actor_options(pool: ActorPoolConfig, plan: PoolPlan) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_cpus": plan.num_cpus,
        "max_restarts": pool.max_restarts,
        "max_task_retries": pool.max_restarts,
    }
    if plan.num_gpus:
        options["num_gpus"] = plan.num_gpus
    return options


def _fits(plan: PoolPlan, resources: dict[str, float]) -> int:
    """How many of the plan's actors ``resources`` (one node's) can hold."""
    cpu = int(resources.get("CPU", 0) // plan.num_cpus) if plan.num_cpus else plan.num_actors
    gpu = int(resources.get("GPU", 0) // plan.num_gpus) if plan.num_gpus else plan.num_actors
    return min(cpu, gpu)


def cluster_is_fixed() -> bool:
    """True when this process started the Ray it uses (an embedded Ray: it never grows)."""
    node = getattr(ray._private.worker, "_global_node", None)
    return bool(getattr(node, "head", False))


def check_fits(plan: PoolPlan, pool: ActorPoolConfig, fixed: bool | None = None) -> bool:
    """Whether the live nodes can hold every actor of ``plan`` at once (an actor's CPUs and GPU
    must all be on one node).  When they cannot: on a fixed cluster raise
    :class:`PoolTooLargeError`; on one that may grow, say (once) that the pool waits, and for how
    long, and return False."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    room = sum(_fits(plan, res) for res in nodes)
    if room >= plan.num_actors:
        return True
    unit = f"{plan.num_cpus} CPU" + (f" + {plan.num_gpus} GPU" if plan.num_gpus else "")
    has = ", ".join(
        f"{res.get('CPU', 0):g} CPU" + (f" + {res.get('GPU', 0):g} GPU" if plan.num_gpus else "") for res in nodes
    )
    need = f"actors.num_actors={plan.num_actors} needs {plan.num_actors} x ({unit}) on its nodes"
    if fixed if fixed is not None else cluster_is_fixed():
        raise PoolTooLargeError(
            f"{need}; this Ray (started by the job) has room for {room} ({len(nodes)} node(s): {has}); lower "
            f"actors.num_actors (or actors.cpus_per_actor), or raise ray.num_cpus up to this machine's CPUs"
        )
    print(
        f"[pool] waiting for resources: {need}; the cluster has room for {room} now ({has}); waiting up to "
        f"{AUTOSCALE_WAIT_S:.0f} s for an autoscaler to add nodes",
        flush=True,
    )
    return False


def start_pool(
    worker_cls: type, pool: ActorPoolConfig, use_gpu: bool, max_actors: int, prefix: str, args: Callable[[str], tuple]
) -> list:
    """Start the actors of :func:`plan_pool`; ``args(name)`` gives each one's constructor arguments.

    Actors are named ``<prefix>-<random tag>-<i>`` so that a test or an operator can find one.
    A pool the cluster can never hold is refused first (:func:`check_fits`).
    """
    plan = plan_pool(pool, use_gpu, max_actors, ray.cluster_resources())
    check_fits(plan, pool)
    remote_cls, options = ray.remote(worker_cls), _actor_options(pool, plan)
    tag = uuid.uuid4().hex[:8]
    names = [f"{prefix}-{tag}-{i}" for i in range(plan.num_actors)]
    return [remote_cls.options(name=name, **options).remote(*args(name)) for name in names]


def replacer(
    worker_cls: type, pool: ActorPoolConfig, use_gpu: bool, prefix: str, args: Callable[[str], tuple]
) -> Callable[[], Any | None]:
    """For :func:`dispatch`: a function that starts one new actor when the cluster has a free slot
    for it right now (so that nothing waits for resources), else returns None."""
    plan = PoolPlan(1, 1 if use_gpu else 0, 1 if use_gpu else pool.cpus_per_actor)
    remote_cls, options = ray.remote(worker_cls), _actor_options(pool, plan)
    count = 0

    def replace() -> Any | None:
        nonlocal count
        free = ray.available_resources()
        if free.get("CPU", 0) < plan.num_cpus or free.get("GPU", 0) < plan.num_gpus:
            return None
        count += 1
        name = f"{prefix}-{uuid.uuid4().hex[:8]}-r{count}"
        return remote_cls.options(name=name, **options).remote(*args(name))

    return replace


def kill_pool(actors: list) -> None:
    """Kill every actor of the pool without restart (they hold CPUs/GPUs for life otherwise).

    :func:`dispatch` cancels what it leaves in flight before it returns or raises: an actor killed
    with a task in flight makes Ray log that the task "will be retried" (measured: after a cancel
    it logs nothing).
    """
    for actor in actors:
        with contextlib.suppress(ValueError):  # listed twice, or already gone
            ray.kill(actor, no_restart=True)


def _cancel(refs: Iterable) -> None:
    for ref in refs:
        try:
            ray.cancel(ref)
        except Exception as exc:  # noqa: BLE001 - a task that already finished cannot be cancelled
            log.debug("cancel: %s", exc)


def wait_ready(actors: list, timeout_s: float = AUTOSCALE_WAIT_S) -> list:
    """Wait until every actor has run its constructor (``actor.ready()``); returns the live ones.

    An actor whose constructor met bad input (an unreachable store, a changed model) keeps the
    :class:`uiface_ray.errors.InputError` and raises it from ``ready()``: it is raised here with
    its type and message (one ``error:`` line for the user).  An actor that died meanwhile is
    dropped with a warning.  After ``timeout_s`` the actors still waiting for a slot are killed
    and the pool goes on with the started ones; if none is left, :class:`PoolError` is raised
    (:class:`PoolTooLargeError` when none ever got a slot).
    """
    live, error = [], None
    refs = {actor.ready.remote(): actor for actor in actors}
    ready, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        try:
            ray.get(ref)
            live.append(refs[ref])
        except RayTaskError as exc:  # the constructor caught an input error; ready() raised it
            raise input_error_of(exc) or PoolError(f"an actor could not start: {one_line(exc)}") from None
        except RayActorError as exc:
            log.warning("an actor died while starting: %s", one_line(exc))
            error = error or exc
    if waiting:
        log.warning("%d actor(s) found no slot in %.0f s; going on with %d", len(waiting), timeout_s, len(live))
        kill_pool([refs[ref] for ref in waiting])
        if not live and error is None:
            raise PoolTooLargeError(
                f"no actor of the pool found a free slot in {timeout_s:.0f} s ({dict(ray.cluster_resources())}); "
                "lower actors.num_actors or add nodes"
            )
    if not live:
        raise PoolError(f"no actor of the pool could start: {one_line(error)}") from error
    return live
