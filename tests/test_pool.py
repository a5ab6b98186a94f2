"""The one actor pool (``runtime.pool.ActorPool``) through a real Ray: a lost actor (its worker process
killed with SIGKILL) is replaced in a free slot and its item retried there; results come in the
items' order when asked; every actor the pool started is dead after the ``with`` block, on success
and on error; an input error met in a constructor is raised as itself."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from ray import cloudpickle
from ray.exceptions import RayActorError

from tiny_assets import wait_cpus_free
from uiface_ray.config import ActorPoolConfig
from uiface_ray.errors import InputError
from uiface_ray.runtime.pool import ActorPool, PoolError

# the workers cannot import this test module: its classes travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Worker:
    """Returns ``(item * 10, its pid)``; kills its own process (SIGKILL) holding item ``die_on``
    on that item's first attempt."""

    def __init__(self, die_on: int | None = None):
        self.die_on = die_on

    def ready(self) -> int:
        return os.getpid()

    def run(self, item: int, attempt: int) -> tuple[int, int]:
        if item == self.die_on and attempt == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.02 * (item % 3))  # results arrive out of order
        return item * 10, os.getpid()

    def fail(self, item: int) -> float:
        return item / 0


class _BadInput(InputError):
    pass


class _Refuses:
    def __init__(self):
        self.error = _BadInput("model m: not a readable safetensors file")

    def ready(self) -> None:
        raise self.error


def _run(actor, item: int, attempt: int):
    return actor.run.remote(item, attempt)


def _fail(actor, item: int, attempt: int):
    return actor.fail.remote(item)


def _dead(ray, handle, timeout_s: float = 60.0) -> bool:
    """True once a call on ``handle`` fails as its actor's death (``ray.kill`` is asynchronous: a call
    sent right after it may still reach the living actor, so a call that returns is asked again)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(handle.ready.remote(), timeout=timeout_s)
        except RayActorError:
            return True
        time.sleep(0.2)
    return False


def test_a_lost_actor_is_replaced_in_a_free_slot_and_its_item_retried(ray_local):
    settings = ActorPoolConfig(num_actors=1, use_gpu=False, max_restarts=0, tasks_per_actor=2)
    seen = []
    with ActorPool(_Worker, (3,), settings, use_gpu=False, max_actors=8, name="uiface-test-pool") as pool:
        first = pool.actors[0]
        first_pid = ray_local.get(first.ready.remote())
        results = []
        for item, (value, pid) in pool.map(range(8), _run):
            results.append((item, value, pid))
            seen.extend(a for a in pool.actors if a not in seen)
        assert pool.stats.actors_lost == 1 and pool.stats.retried >= 1 and pool.stats.started == 2
    assert sorted(item for item, _, _ in results) == list(range(8))
    assert all(value == item * 10 for item, value, _ in results)
    # item 3 died with the first actor and was done again by the replacement, in the slot that was free
    assert {pid for item, _, pid in results if item == 3} != {first_pid}
    assert len({pid for _, _, pid in results}) >= 2
    # after the block: every actor the pool started is dead and its CPU free
    assert all(_dead(ray_local, handle) for handle in [first, *seen])
    wait_cpus_free(ray_local)


def test_ordered_map_and_every_actor_killed_on_error(ray_local):
    settings = ActorPoolConfig(num_actors=2, use_gpu=False, max_restarts=0, tasks_per_actor=2)
    with pytest.raises(ValueError, match="the consumer failed"):
        with ActorPool(_Worker, (), settings, use_gpu=False, max_actors=20, name="uiface-test-pool") as pool:
            handles = pool.actors
            order = []
            for item, (value, _) in pool.map(range(20), _run, ordered=True):
                order.append(item)
                if item == 9:
                    raise ValueError("the consumer failed")
    assert order == list(range(10))  # in the items' order although tasks finish out of order
    assert len(handles) == 2 and all(_dead(ray_local, handle) for handle in handles)
    wait_cpus_free(ray_local)


def test_an_input_error_in_a_constructor_is_raised_as_itself(ray_local):
    settings = ActorPoolConfig(num_actors=1, use_gpu=False, max_restarts=0)
    with pytest.raises(_BadInput, match="not a readable safetensors file"):
        with ActorPool(_Refuses, (), settings, use_gpu=False, max_actors=1, name="uiface-test-pool"):
            pass
    wait_cpus_free(ray_local)


def test_an_item_failing_every_time_stops_the_map(ray_local):
    settings = ActorPoolConfig(num_actors=1, use_gpu=False, max_restarts=0, max_shard_attempts=2)
    with ActorPool(_Worker, (), settings, use_gpu=False, max_actors=1, name="uiface-test-pool") as pool:
        with pytest.raises(PoolError, match="item 7 failed 2 times; last error: division by zero"):
            for _ in pool.map([7], _fail, label=lambda item: f"item {item}"):
                pass
    wait_cpus_free(ray_local)
