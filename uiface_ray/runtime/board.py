"""The progress board of a pool: where actors post images done inside unfinished items."""

from __future__ import annotations

import ray

__all__ = ["ProgressBoard", "board_of", "start_board"]


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
    """The :class:`ProgressBoard` actor of one job (``num_cpus=0``: it never waits for a slot), on
    the driver's node: a board on a node that goes away would take the progress line with it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(ProgressBoard).options(num_cpus=0, name=name, scheduling_strategy=here).remote()


def board_of(name: str | None):
    """The board a worker posts to, by name (None: no board)."""
    return ray.get_actor(name) if name else None
