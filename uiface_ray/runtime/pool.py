"""One pool of Ray actors for every stage that fans work out: synthesis, make_identities, embed, export.

    with ActorPool(SamplerWorker, args, cfg.actors, use_gpu=False, max_actors=len(todo), name="uiface-sampler") as pool:
        for item, result in pool.map(todo, lambda actor, item, attempt: actor.run.remote(item, attempt)):
            ...

Entering the pool starts its actors and waits until each has run its constructor (``ready()``);
leaving it cancels what is in flight and kills every actor it ever started, on success and on
error.  Before starting, the cluster's nodes are checked for room (:mod:`uiface_ray.runtime.pool_size`:
an embedded Ray never grows, so a pool it cannot hold is refused with one line; on a cluster that
may grow, the wait is said and bounded).

:meth:`ActorPool.map` keeps at most ``tasks_per_actor`` tasks in flight per actor and yields
``(item, result)`` as results arrive (``ordered=True``: in the items' order, holding a bounded
window of results).  A task that fails because its actor is gone or unreachable (any
``RayActorError``: ``ActorDiedError``, or ``ActorUnavailableError`` when its node went away) or
that raised (``RayTaskError``) goes back to the front of the queue for a surviving actor, at most
``max_shard_attempts`` tries in all.  A lost actor is killed for good (so it never comes back
holding a slot nobody uses) and replaced only when the cluster has a free slot for a new one right
then, so nothing waits for resources the lost one might still hold.  Ray's own
``max_restarts``/``max_task_retries`` cover actors that crash and come back in their slot.  A task
that raises an :class:`~uiface_ray.errors.InputError` stops the map with it: running it elsewhere
cannot help.

Settings reach an actor only through its constructor arguments: never through ``runtime_env``
env_vars, which Ray writes to its logs in plain text.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import ray
from ray.exceptions import RayActorError, RayTaskError

from uiface_ray.config import ActorPoolConfig
from uiface_ray.errors import InputError, input_error_of
from uiface_ray.runtime.pool_size import (
    AUTOSCALE_WAIT_S,
    PoolError,
    PoolPlan,
    PoolTooLargeError,
    check_fits,
    plan_pool,
    wants_gpu,
)

__all__ = [
    "AUTOSCALE_WAIT_S",
    "ActorPool",
    "PoolError",
    "PoolPlan",
    "PoolStats",
    "PoolTooLargeError",
    "PoolWorker",
    "check_fits",
    "one_line",
    "plan_pool",
    "wants_gpu",
]

log = logging.getLogger(__name__)


def one_line(exc: BaseException | None) -> str:
    """The first line of an error's message (a Ray task error carries the remote traceback)."""
    if exc is None:
        return ""
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# The actors


class PoolWorker:
    """Base of a pool's actor class: its constructor loads what it needs inside ``with
    self.loading():``; an :class:`~uiface_ray.errors.InputError` met there (a damaged checkpoint, an
    unreachable store) is kept and raised by :meth:`ready`, so that it reaches the driver with its
    type and message instead of as an actor death."""

    init_error: InputError | None = None

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        try:
            yield
        except InputError as exc:
            self.init_error = exc

    def ready(self) -> bool:
        """Returns once the constructor has run; raises what stopped it."""
        if self.init_error is not None:
            raise self.init_error
        return True


# --------------------------------------------------------------------------------------------
# The work of one map


class _Queue:
    """The items of one :meth:`ActorPool.map`: pulled lazily and numbered, retried at the front,
    and (``ordered``) released in the items' order, never more than ``window`` numbers ahead of
    the first one not yet released (the bound on what the driver holds)."""

    def __init__(self, items: Iterable[Any], ordered: bool, window: int):
        self._source = iter(items)
        self._pulled = 0
        self._retry: deque = deque()
        self._held: dict[int, tuple[Any, Any]] = {}
        self._released = 0
        self.ordered, self.window = ordered, window
        self.attempts: dict[int, int] = {}

    def take(self) -> tuple[int, Any] | None:
        """The next ``(number, item)`` to run (a retry first), or None for now."""
        if self._retry:
            return self._retry.popleft()
        if self.ordered and self._pulled - self._released >= self.window:
            return None
        try:
            item = next(self._source)
        except StopIteration:
            return None
        self._pulled += 1
        return self._pulled - 1, item

    def again(self, number: int, item: Any) -> None:
        self._retry.appendleft((number, item))

    def done(self, number: int, item: Any, value: Any) -> list[tuple[Any, Any]]:
        """What may be yielded now that ``number`` has its result."""
        if not self.ordered:
            return [(item, value)]
        self._held[number] = (item, value)
        out = []
        while self._released in self._held:
            out.append(self._held.pop(self._released))
            self._released += 1
        return out


@dataclass
class PoolStats:
    started: int = 0  # actors started, replacements included
    completed: int = 0  # tasks that returned a result
    retried: int = 0  # tasks handed out again after a failure
    actors_lost: int = 0


# --------------------------------------------------------------------------------------------
# The pool


class ActorPool:
    """A fixed pool of ``worker_cls`` actors (see the module docstring); ``args`` are each actor's
    constructor arguments.  ``worker_cls`` needs a ``ready()`` method that returns once the
    constructor has run and raises the :class:`~uiface_ray.errors.InputError` it met, if any
    (:class:`PoolWorker` gives it).
    Actors are named ``<name>-<random tag>-<n>`` so that a test or an operator can find one."""

    def __init__(
        self,
        worker_cls: type,
        args: tuple,
        settings: ActorPoolConfig,
        *,
        use_gpu: bool,
        max_actors: int,
        name: str,
        ready_timeout_s: float = AUTOSCALE_WAIT_S,
    ):
        self.settings, self.use_gpu, self.max_actors = settings, use_gpu, max_actors
        self.ready_timeout_s = ready_timeout_s
        self._remote, self._args = ray.remote(worker_cls), args
        self._prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self._options: dict[str, Any] = {}
        self._started: list = []  # every actor ever started: all are killed on exit
        self._slots: dict[int, Any] = {}  # slot number (never reused) -> live actor
        self._inflight: dict = {}  # ObjectRef -> (number, item, slot)
        self.stats = PoolStats()
        self.size = 0  # actors that started at entry

    # -- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> "ActorPool":
        try:
            self._start()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    @property
    def actors(self) -> list:
        """The live actors."""
        return list(self._slots.values())

    @property
    def in_flight(self) -> list:
        """The items handed to actors whose results have not arrived."""
        return [item for _, item, _ in self._inflight.values()]

    def _start(self) -> None:
        if self.max_actors < 1:
            return
        plan = plan_pool(self.settings, self.use_gpu, self.max_actors, ray.cluster_resources())
        check_fits(plan, self.settings)
        self._options = {"num_cpus": plan.num_cpus, "max_restarts": self.settings.max_restarts}
        self._options["max_task_retries"] = self.settings.max_restarts
        if plan.num_gpus:
            self._options["num_gpus"] = plan.num_gpus
        for slot, actor in enumerate(self._wait_ready([self._launch() for _ in range(plan.num_actors)])):
            self._slots[slot] = actor
        self.size = len(self._slots)

    def _launch(self):
        actor = self._remote.options(name=f"{self._prefix}-{len(self._started)}", **self._options).remote(*self._args)
        self._started.append(actor)
        self.stats.started += 1
        return actor

    def _wait_ready(self, actors: list) -> list:
        """The actors whose constructor ran.  An :class:`InputError` one met is raised with its type and
        message (one ``error:`` line); one that died starting is dropped with a warning.  After
        ``ready_timeout_s`` those still waiting for a slot are killed and the pool goes on with the
        others; none left: :class:`PoolError` (:class:`PoolTooLargeError` when none got a slot)."""
        live, error = [], None
        refs = {actor.ready.remote(): actor for actor in actors}
        ready, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=self.ready_timeout_s)
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
            log.warning(
                "%d actor(s) found no slot in %.0f s; going on with %d", len(waiting), self.ready_timeout_s, len(live)
            )
            for ref in waiting:
                _kill(refs[ref])
            if not live and error is None:
                raise PoolTooLargeError(
                    f"no actor of the pool found a free slot in {self.ready_timeout_s:.0f} s "
                    f"({dict(ray.cluster_resources())}); lower actors.num_actors or add nodes"
                )
        if not live:
            raise PoolError(f"no actor of the pool could start: {one_line(error)}") from error
        return live

    def _close(self) -> None:
        """Cancel what is in flight (an actor killed with a task in flight makes Ray log that the task
        "will be retried"; after a cancel it logs nothing), then kill every actor without restart
        (they hold CPUs/GPUs for life otherwise)."""
        for ref in list(self._inflight):
            try:
                ray.cancel(ref)
            except Exception as exc:  # noqa: BLE001 - a task that already finished cannot be cancelled
                log.debug("cancel: %s", exc)
        self._inflight.clear()
        for actor in self._started:
            _kill(actor)
        self._slots.clear()

    # -- the work ------------------------------------------------------------------------------

    def map(
        self,
        items: Iterable[Any],
        call: Callable[[Any, Any, int], Any],
        *,
        ordered: bool = False,
        label: Callable[[Any], str] = str,
        on_tick: Callable[[], None] | None = None,
        tick_s: float = 5.0,
    ) -> Iterator[tuple[Any, Any]]:
        """``call(actor, item, attempt) -> ObjectRef`` for every item; yields ``(item, result)`` as
        results arrive (in the items' order when ``ordered``).  ``on_tick()`` runs at least every
        ``tick_s`` seconds while tasks run; ``label(item)`` names an item in warnings and errors.
        Leaving the loop early (``break``, an error) cancels what is in flight."""
        depth = self.settings.tasks_per_actor
        queue = _Queue(items, ordered, window=2 * depth * max(1, len(self._slots)))
        try:
            self._fill(queue, call)
            while self._inflight:
                ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=tick_s if on_tick else None)
                if on_tick is not None:
                    on_tick()
                if ready:
                    yield from self._land(ready[0], queue, label)
                self._fill(queue, call)
        finally:
            for ref in list(self._inflight):
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            self._inflight.clear()

    def _fill(self, queue: _Queue, call: Callable[[Any, Any, int], Any]) -> None:
        """Hand items to actors with fewer than ``tasks_per_actor`` tasks in flight."""
        load = {slot: 0 for slot in self._slots}
        for _, _, slot in self._inflight.values():
            load[slot] = load.get(slot, 0) + 1
        for slot, actor in list(self._slots.items()):
            while load[slot] < self.settings.tasks_per_actor:
                taken = queue.take()
                if taken is None:
                    return
                number, item = taken
                attempt = queue.attempts.get(number, 0)
                queue.attempts[number] = attempt + 1
                self._inflight[call(actor, item, attempt)] = (number, item, slot)
                load[slot] += 1

    def _land(self, ref, queue: _Queue, label: Callable[[Any], str]) -> list[tuple[Any, Any]]:
        """What may be yielded now that ``ref`` finished; a failed task goes back to the queue."""
        number, item, slot = self._inflight.pop(ref)
        try:
            value = ray.get(ref)
        except (RayActorError, RayTaskError) as exc:
            bad_input = input_error_of(exc)
            if bad_input is not None:
                raise bad_input from None
            if isinstance(exc, RayActorError):
                log.warning("actor %d lost holding %s; handing it to another", slot, label(item))
                self._lose(slot, exc)
            else:
                log.warning("%s failed on actor %d: %s", label(item), slot, one_line(exc))
            tries = queue.attempts[number]
            if tries >= self.settings.max_shard_attempts:
                raise PoolError(f"{label(item)} failed {tries} times; last error: {one_line(exc)}") from exc
            queue.again(number, item)
            self.stats.retried += 1
            return []
        self.stats.completed += 1
        return queue.done(number, item, value)

    def _lose(self, slot: int, exc: Exception) -> None:
        """The actor of ``slot`` died or its node went away: drop it for good, and start a new one if a
        slot is free right now."""
        actor = self._slots.pop(slot, None)
        if actor is None:  # already dropped (another of its tasks failed first)
            return
        self.stats.actors_lost += 1
        _kill(actor)
        free = ray.available_resources()
        if free.get("CPU", 0) >= self._options["num_cpus"] and free.get("GPU", 0) >= self._options.get("num_gpus", 0):
            new = self.stats.started  # a slot number never used before (tasks of the lost one still name theirs)
            self._slots[new] = self._launch()
            log.warning("actor %d lost (%s); started actor %d in a free slot", slot, one_line(exc), new)
        elif not self._slots:
            raise PoolTooLargeError(
                f"every actor of the pool was lost and the cluster has no free slot for a new one "
                f"({one_line(exc)}); rerun the same command to resume when nodes are back"
            ) from None


def _kill(actor) -> None:
    with contextlib.suppress(Exception):  # already gone
        ray.kill(actor, no_restart=True)
