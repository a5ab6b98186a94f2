"""How one training worker reaches the others: the one context both training loops take.

Ray-agnostic: the runtime layer fills it in on Ray Train (:mod:`uiface_ray.runtime.train_diffusion`,
:mod:`uiface_ray.runtime.train_fr`); the defaults are a single process on the CPU, as the
benchmarks and the local FR runner use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

__all__ = ["WorkerContext"]


def _same(value):
    return value


def _no_report(metrics: dict, state: dict | None = None) -> None:
    return None


@dataclass
class WorkerContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    wrap: Callable[[nn.Module], nn.Module] = _same  # the model -> the model as trained (DDP on Ray Train)
    mean: Callable[[float], float] = _same  # a float averaged over ranks
    from_rank0: Callable[[float], float] = _same  # rank 0's value of a float, on every rank
    # report(metrics, state=None), on every rank: metrics, with a checkpoint's state to keep (rank 0)
    report: Callable[..., None] = _no_report
    log: Callable[[str], None] = print
    restored: dict | None = None  # a checkpoint's state to resume from (FR on Ray Train)
