"""How many actors a pool gets and whether the cluster can hold them (no actor is started here).

One actor per GPU (``num_gpus=1``) or per ``cpus_per_actor`` CPUs, never more than the work items;
an embedded Ray never grows, so a pool it cannot hold is refused with one line
(:class:`PoolTooLargeError`); on a cluster that may grow, the wait is said and bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from uiface_ray.config import ActorPoolConfig
from uiface_ray.errors import InputError
from uiface_ray.runtime.ray_compat import cluster_is_fixed

__all__ = ["AUTOSCALE_WAIT_S", "PoolError", "PoolPlan", "PoolTooLargeError", "check_fits", "plan_pool", "wants_gpu"]

AUTOSCALE_WAIT_S = 900.0  # how long a pool larger than a growable cluster waits for its actors


class PoolError(RuntimeError):
    """The pool cannot go on (no slot, every actor dead, an item failing again and again)."""


class PoolTooLargeError(InputError, PoolError):
    """The pool asked for more than the cluster can ever hold, or every actor was lost and no slot
    is left for a new one: one ``error:`` line (exit 2) that says what to change or to rerun."""


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


def _fits(plan: PoolPlan, resources: dict[str, float]) -> int:
    """How many of the plan's actors ``resources`` (one node's) can hold."""
    cpu = int(resources.get("CPU", 0) // plan.num_cpus) if plan.num_cpus else plan.num_actors
    gpu = int(resources.get("GPU", 0) // plan.num_gpus) if plan.num_gpus else plan.num_actors
    return min(cpu, gpu)


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
