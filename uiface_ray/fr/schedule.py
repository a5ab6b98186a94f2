"""Schedules of FR training: learning rate, margin warm-up, and how far along a budgeted run is.

A run is budgeted in steps (``epochs`` / ``max_steps``) and optionally in minutes; its *progress*
``p`` in [0, 1] is whichever budget is nearer to spent: ``max(step / total_steps, elapsed / budget)``,
so a schedule reaches its end exactly when the run does, whether the steps or the clock run out.

Learning rate at a step (``base_lr`` times two factors):
  1. warm-up:  ``min(1, (step + 1) / warmup_steps)``, linear from ``base_lr / warmup_steps``;
  2. shape over progress ``p``:
     - ``cosine``:   ``(1 + cos(pi p)) / 2``, from 1 to 0 at the end of the budget;
     - ``step``:     ``gamma ** (number of milestones <= p)`` (UIFace A.1: 0.1, 0.01, 0.001, 0.0001
       with milestones 0.25, 0.5, 0.75 and gamma 0.1);
     - ``constant``: 1.
Margin warm-up: ``m * min(1, step / warmup_steps)``, from 0 (plain normalised softmax) to ``m``;
a margin at full strength on random features stalls small-data training.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("cosine", "step", "constant")


def progress(step: int, total_steps: int, elapsed_s: float = 0.0, budget_s: float | None = None) -> float:
    """Fraction of the budget spent, in [0, 1]: the larger of the step and the time fractions."""
    p = step / total_steps if total_steps > 0 else 1.0
    if budget_s:
        p = max(p, elapsed_s / budget_s)
    return min(max(p, 0.0), 1.0)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up: ``(step + 1) / warmup_steps`` until it reaches 1 (no warm-up: 1)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def lr_at(
    step: int,
    p: float,
    base_lr: float,
    schedule: str = "step",
    warmup_steps: int = 0,
    milestones: tuple[float, ...] = (),
    gamma: float = 0.1,
) -> float:
    """Learning rate at ``step`` and progress ``p`` (see the module docstring)."""
    p = min(max(p, 0.0), 1.0)
    if schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * p))
    elif schedule == "step":
        shape = gamma ** sum(p >= m for m in milestones)
    elif schedule == "constant":
        shape = 1.0
    else:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    return base_lr * warmup_factor(step, warmup_steps) * shape


def margin_at(step: int, m: float, warmup_steps: int = 0) -> float:
    """Margin at ``step``: ramped linearly from 0 to ``m`` over ``warmup_steps`` (none: ``m``)."""
    if warmup_steps <= 0:
        return m
    return m * min(1.0, step / warmup_steps)


def ema_decay_at(step: int, decay: float) -> float:
    """Decay of the weight average after ``step`` updates: ``min(decay, (1 + step) / (10 + step))``,
    so that the average follows the fast-moving early weights instead of the random start."""
    return min(decay, (1.0 + step) / (10.0 + step))
