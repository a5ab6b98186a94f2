"""Learning-rate schedules of both training stages, from one warm-up and one set of shapes.

Shapes over a progress ``p`` in [0, 1] (:func:`shape_at`):
  - ``cosine``:   ``min_ratio + (1 - min_ratio) (1 + cos(pi p)) / 2``, from 1 to ``min_ratio``;
  - ``step``:     ``gamma ** (number of milestones <= p)`` (UIFace A.1 for FR: 0.1, 0.01, 0.001,
    0.0001 with milestones 0.25, 0.5, 0.75 and gamma 0.1);
  - ``constant``: 1.
Warm-up (:func:`warmup_factor`): ``min(1, (step + 1) / warmup_steps)``, linear from ``1 / warmup_steps``.

- Diffusion (:func:`lr_factor`, paper A.1): warm-up, then the shape over the steps after it
  (``p = (step - warmup_steps) / (max_steps - warmup_steps)``).
- FR (:func:`lr_at`): warm-up times the shape over the run's progress ``p``
  (:func:`uiface_ray.fr.schedule.progress`: steps or minutes, whichever budget is nearer to spent).
"""

from __future__ import annotations

import math

import torch

__all__ = ["LR_SCHEDULES", "lr_at", "lr_factor", "make_lr_scheduler", "shape_at", "warmup_factor"]

LR_SCHEDULES = ("cosine", "step", "constant")


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up: ``(step + 1) / warmup_steps`` until it reaches 1 (no warm-up: 1)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def shape_at(
    p: float, schedule: str, milestones: tuple[float, ...] = (), gamma: float = 0.1, min_ratio: float = 0.0
) -> float:
    """The schedule's factor at progress ``p`` (see the module docstring)."""
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "step":
        return gamma ** sum(p >= m for m in milestones)
    if schedule == "constant":
        return 1.0
    raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def lr_factor(
    step: int, max_steps: int, warmup_steps: int = 0, schedule: str = "cosine", min_lr_ratio: float = 0.0
) -> float:
    """Diffusion: multiplier of the peak lr for optimiser step ``step`` (0-based)."""
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    span = max(1, max_steps - warmup_steps)
    return shape_at(min(1.0, (step - warmup_steps) / span), schedule, min_ratio=min_lr_ratio)


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, max_steps, warmup_steps, schedule, min_lr_ratio)
    )


def lr_at(
    step: int,
    p: float,
    base_lr: float,
    schedule: str = "step",
    warmup_steps: int = 0,
    milestones: tuple[float, ...] = (),
    gamma: float = 0.1,
) -> float:
    """FR: learning rate at ``step`` and progress ``p``: ``base_lr`` times warm-up times shape."""
    p = min(max(p, 0.0), 1.0)
    return base_lr * warmup_factor(step, warmup_steps) * shape_at(p, schedule, milestones, gamma)
