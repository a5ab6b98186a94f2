"""Schedules of FR training besides the learning rate: how far along a budgeted run is, and the
margin warm-up.  (The learning rate itself: :func:`uiface_ray.optim.lr.lr_at`; the weight
average's decay warm-up: :class:`uiface_ray.optim.ema.EMA` with ``warmup``.)

A run is budgeted in steps (``epochs`` / ``max_steps``) and optionally in minutes; its *progress*
``p`` in [0, 1] is whichever budget is nearer to spent: ``max(step / total_steps, elapsed / budget)``,
so a schedule reaches its end exactly when the run does, whether the steps or the clock run out.

Margin warm-up: ``m * min(1, step / warmup_steps)``, from 0 (plain normalised softmax) to ``m``;
a margin at full strength on random features stalls small-data training.
"""

from __future__ import annotations


def progress(step: int, total_steps: int, elapsed_s: float = 0.0, budget_s: float | None = None) -> float:
    """Fraction of the budget spent, in [0, 1]: the larger of the step and the time fractions."""
    p = step / total_steps if total_steps > 0 else 1.0
    if budget_s:
        p = max(p, elapsed_s / budget_s)
    return min(max(p, 0.0), 1.0)


def margin_at(step: int, m: float, warmup_steps: int = 0) -> float:
    """Margin at ``step``: ramped linearly from 0 to ``m`` over ``warmup_steps`` (none: ``m``)."""
    if warmup_steps <= 0:
        return m
    return m * min(1.0, step / warmup_steps)
